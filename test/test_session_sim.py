"""A whole session through the ROS 2 graph (``mile-ros sim``): real processes, real DDS, real bags.

Also checks data integrity: the dataset built from the bags equals, step for step, what the
arbitration node executed (as heard on DDS by an independent listener).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from mile_ros.cli.sim import default_config
from mile_ros.graph.bag_dataset import build_dataset, episode_steps, find_bags
from mile_ros.graph.bag_episode import read_bag
from mile_ros.learning import BCConfig, MileCheckpoint, fit_bc, load_checkpoint, stack_frames
from mile_ros.nodes.common import stamp_ns
from mile_ros.nodes.probe import Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

TASK = "drawer-open-v3"
STEPS = 80


def mediocre_policy(path):
    """BC of the noisy scripted expert on two short demonstrations: good enough to need help."""
    from mile_ros.sim import make_env, make_expert

    env = make_env(TASK, seed=0)
    expert = make_expert(TASK, env)
    rng = np.random.default_rng(0)
    frames, actions, episodes = [], [], []
    for ep in range(2):
        frame = env.reset(ep)
        for _ in range(100):
            action = np.clip(expert.act(frame) + 0.3 * rng.standard_normal(4), -1, 1)
            frames.append(frame)
            actions.append(action)
            episodes.append(ep)
            result = env.step(action)
            if result.done:
                break
            frame = result.obs
    env.close()
    obs = stack_frames(np.array(frames, np.float32), np.array(episodes), env.spec.frame_stack)
    policy, _ = fit_bc(
        env.spec,
        obs,
        np.array(actions, np.float32),
        np.array(episodes),
        config=BCConfig(hidden=(64, 64), epochs=15, lr=1e-3, batch_size=64, val_fraction=0.0),
    )
    MileCheckpoint(env.spec, policy).save(path)


def test_session_records_trains_reloads_and_keeps_every_step(tmp_path):
    init = tmp_path / "init.pt"
    mediocre_policy(init)
    # This human's P(I=1|s) is near 0 or 1 (cost calibrated on full-length rollouts), so in 80-step
    # episodes it takes over only with a high target rate; set through the real parameter file.
    config = yaml.safe_load(default_config().read_text())
    config["simulated_human"]["ros__parameters"]["target_intervention_rate"] = 0.9
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    domain = unique_domain_id()
    probe = Probe(domain)
    try:
        probe.listen("/mile/executed_action", depth=5000)
        probe.listen("/mile/human_action", depth=5000)
        cmd = [
            sys.executable,
            "-m",
            "mile_ros.cli.main",
            "sim",
            "--task",
            TASK,
            "--iterations",
            "1",
            "--episodes",
            "1",
            "--eval-episodes",
            "1",
            "--out",
            str(run),
            "--init-policy",
            str(init),
            "--max-episode-steps",
            str(STEPS),
            "--epochs",
            "5",
            "--mental-rollouts",
            "2",
            "--domain-id",
            str(domain),
            "--config",
            str(tmp_path / "sim.yaml"),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    finally:
        executed = probe.messages("/mile/executed_action")
        humans = probe.messages("/mile/human_action")
        probe.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "iteration 0: policy-alone success rate" in out and "intervention rate" in out
    # The run directory: bags, checkpoints, metrics, plot.
    bags = find_bags(run / "bags")
    assert [b.relative_to(run / "bags").as_posix() for b in bags] == [
        "iter_000/eval_000",
        "iter_000/train_000",
        "iter_001/eval_000",
    ]
    update = run / "checkpoints" / "update_001.pt"
    ckpt = load_checkpoint(update)
    assert ckpt.mental is not None and ckpt.meta["rows"] > 0
    state = json.loads((run / "session.json").read_text())
    assert state["checkpoints"] == {"1": str(update)}
    assert "now acting with " + str(update) in (run / "logs" / "policy_node.log").read_text()
    last_eval = next(e for e in state["episodes"] if e["name"] == "iter_001/eval_000")
    assert last_eval["checkpoint"] == str(update)  # evaluated with the new policy
    metrics = json.loads((run / "metrics.json").read_text())["iterations"]
    assert [r["iteration"] for r in metrics] == [0, 1]
    assert (run / "metrics.csv").is_file() and (run / "learning_curve.png").stat().st_size > 1000

    # Data integrity: every step of every bag is what arbitration executed, in order.
    first_exec: dict[int, object] = {}
    for m in executed:
        first_exec.setdefault(stamp_ns(m), m)
    human_by_stamp = {stamp_ns(m): m for m in humans}
    total_interventions = 0
    for bag_dir, record in zip(bags, sorted(state["episodes"], key=lambda e: e["bag"])):
        steps = episode_steps(read_bag(bag_dir))
        assert len(steps.stamps) == record["steps"] > 0
        assert list(steps.stamps) == sorted(steps.stamps)
        lo, hi = steps.stamps[0], steps.stamps[-1]
        heard = sorted(s for s, m in first_exec.items() if lo <= s <= hi and m.header.frame_id != "hold")
        assert heard == list(steps.stamps), f"{bag_dir.name}: steps missing or extra"
        for k, stamp in enumerate(steps.stamps):
            m = first_exec[stamp]
            np.testing.assert_allclose(steps.executed_action[k], m.position)
            assert steps.intervention[k] == (m.header.frame_id == "human")
            if steps.intervention[k]:
                np.testing.assert_allclose(steps.human_action[k], human_by_stamp[stamp].position)
        assert int(steps.intervention.sum()) == record["interventions"]
        total_interventions += record["interventions"]
        if record["mode"] == "eval":
            assert record["interventions"] == 0  # the human keeps its hands off in evaluation
    assert total_interventions > 0, "the simulated human never took over: integrity of I=1 rows untested"

    # The graph runs the offline protocol: the same policy, human and seed give the same record,
    # step for step, as mile_ros.sim.run_episode (so graph and benchmark results are comparable).
    train = next(e for e in state["episodes"] if e["mode"] == "train")
    graph = build_dataset([run / "bags" / train["name"]], spec=ckpt.spec).dataset
    offline = offline_record(init, seed=train["seed"], rollouts=2, target_rate=0.9)
    n = len(graph)
    assert n == train["steps"] and (len(offline) == n if train["success"] else len(offline) >= n)
    np.testing.assert_allclose(graph.observation, offline.observation[:n], atol=1e-6)
    np.testing.assert_array_equal(graph.intervention, offline.intervention[:n])
    np.testing.assert_allclose(graph.robot_action, offline.robot_action[:n], atol=1e-6)
    np.testing.assert_allclose(graph.human_action, offline.human_action[:n], atol=1e-6)  # NaN where I = 0


def offline_record(init, seed: int, rollouts: int, target_rate: float):
    """The episode ``seed`` run offline under the human the graph's simulated_human node builds."""
    from mile_ros.learning import PolicyRunner
    from mile_ros.sim import make_env
    from mile_ros.sim.human import make_simulated_human
    from mile_ros.sim.rollout import run_episode

    policy = load_checkpoint(init)
    env = make_env(TASK, seed=0)  # the node's seed parameter (default 0)
    try:
        human, _ = make_simulated_human(TASK, policy, env, seed=0, rollouts=rollouts, target_rate=target_rate)
        return run_episode(env, PolicyRunner(policy), seed, human=human).to_dataset(0)
    finally:
        env.close()
