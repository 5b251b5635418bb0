"""ROS-free graph logic: joy mapping, arbitration rules, session plan and metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mile_ros.graph.arbitration import Arbiter, ArbitrationConfig
from mile_ros.graph.joy_mapping import JoyMappingError, load_joy_mapping
from mile_ros.graph.session import SessionConfig, SessionState, Task, next_task, write_metrics


@pytest.mark.parametrize("name", ["ps3", "sdl"])
def test_joy_encode_reads_back_the_action(name):
    mapping = load_joy_mapping(name)
    rng = np.random.default_rng(0)
    for action in [
        *rng.uniform(-1, 1, size=(200, 4)),
        np.zeros(4),
        np.ones(4),
        -np.ones(4),
        [1e-4, 0, -1e-4, 0],
    ]:
        axes, buttons = mapping.encode(action, ["takeover"])
        assert len(axes) == mapping.axes_count and len(buttons) == mapping.buttons_count
        np.testing.assert_allclose(mapping.action(np.float32(axes)), action, atol=1e-6)  # Joy axes are float32
        assert mapping.pressed(buttons, "takeover") and not mapping.pressed(buttons, "success")


def test_joy_dead_zone_and_bad_input(tmp_path):
    m = load_joy_mapping("ps3")
    axes = [0.0] * 6
    axes[m.actions[0].axis] = 0.05  # inside the dead zone
    axes[m.actions[1].axis] = 1.0
    np.testing.assert_allclose(m.action(axes)[:2], [0.0, 1.0])
    with pytest.raises(JoyMappingError, match="axes"):
        m.action([0.0, 0.0])
    with pytest.raises(JoyMappingError, match="NaN"):
        m.action([float("nan")] * 6)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\naxes_count: 2\nbuttons_count: 3\nactions: {dx: {axis: 0}}\nbuttons: {}\n")
    with pytest.raises(JoyMappingError, match="actions missing"):
        load_joy_mapping(bad)
    with pytest.raises(JoyMappingError, match="does not exist"):
        load_joy_mapping(tmp_path / "none.yaml")


def test_arbiter_rules_and_rate_limit():
    mapping = load_joy_mapping("ps3")
    arb = Arbiter(mapping, ArbitrationConfig(watchdog_timeout=0.5, max_jump=0.1))
    rng = np.random.default_rng(1)
    now, outputs, sources = 0.0, [np.zeros(4)], []
    for step in range(300):
        now += 0.05
        takeover = (step // 25) % 2 == 1
        arb.on_proposal(step, rng.uniform(-1, 1, 4), now)
        axes, buttons = mapping.encode(rng.uniform(-1, 1, 4), ["takeover"] if takeover else [])
        arb.on_joy(step, axes, buttons, now)
        cmd = arb.command(now)
        outputs.append(cmd.action)
        sources.append(cmd.source)
        assert cmd.intervention == takeover
        if takeover:
            np.testing.assert_allclose(cmd.human_action, mapping.action(axes))
    jumps = np.abs(np.diff(np.array(outputs), axis=0))
    switches = [i for i in range(1, len(sources)) if sources[i] != sources[i - 1]]
    for i in switches:  # every switch is rate-limited
        assert jumps[i].max() <= 0.1 + 1e-12
    # Stale inputs -> hold, with the gripper kept.
    before = arb.last_output.copy()
    cmd = arb.command(now + 1.0)
    assert cmd.source == "hold"
    np.testing.assert_allclose(cmd.action, [0, 0, 0, before[3]])


def test_session_plan_resume_and_metrics(tmp_path):
    cfg = SessionConfig(iterations=2, episodes=2, eval_episodes=1, seed=3)
    state = SessionState.open(tmp_path, cfg, "drawer-open-v3")
    state.initial_checkpoint = "init.pt"
    seen = []
    while (task := next_task(state)).kind != "done":
        seen.append((task.kind, task.iteration, task.mode, task.index))
        if task.kind == "train":
            state.record_checkpoint(task.iteration, f"update_{task.iteration}.pt")
        else:
            state.record_episode(
                task,
                {"steps": 10, "interventions": 2 if task.mode == "train" else 0, "success": task.index == 0},
            )
        if len(seen) == 4:  # a crash here: a new manager on the same directory continues
            state = SessionState.open(tmp_path, cfg, "drawer-open-v3")
    assert seen == [
        ("episode", 0, "eval", 0),
        ("episode", 0, "train", 0),
        ("episode", 0, "train", 1),
        ("train", 1, "train", 0),
        ("episode", 1, "eval", 0),
        ("episode", 1, "train", 0),
        ("episode", 1, "train", 1),
        ("train", 2, "train", 0),
        ("episode", 2, "eval", 0),
    ]
    assert next_task(state) == Task("done")
    rows = write_metrics(state)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert rows[0]["intervention_rate"] == pytest.approx(0.2) and rows[0]["train_success_rate"] == 0.5
    assert rows[2]["checkpoint"] == "update_2.pt" and rows[2]["eval_success_rate"] == 1.0
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["iterations"][1]["steps"] == 20
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("iteration,")
    with pytest.raises(ValueError, match="same settings"):
        SessionState.open(tmp_path, SessionConfig(iterations=2, episodes=3), "drawer-open-v3")


def test_checkpoint_swap_loads_on_normal_scheduling(tmp_path):
    """A swap started from a SCHED_FIFO control thread (the policy node with realtime_priority) loads
    in a thread on normal scheduling, then acts with the new weights."""
    import os
    import threading

    import torch

    from mile_ros.graph.policy_swap import SwappablePolicy
    from mile_ros.learning import MileCheckpoint, Spec, build_policy
    from mile_ros.nodes.probe import may_use_realtime

    spec = Spec(5, 2, action_low=(-1, -1), action_high=(1, 1))
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(MileCheckpoint(spec, build_policy(spec.stacked_dim, 2, False, (8,))).save(tmp_path / f"{seed}.pt"))
    policy = SwappablePolicy.from_file(str(paths[0]))
    frame = np.linspace(-1, 1, 5)
    before = policy.act(frame)[0]
    seen: dict = {}
    done = threading.Event()

    def loaded(path: str, error: str | None) -> None:  # runs in the loader thread
        tid = threading.get_native_id()
        seen.update(error=error, policy=os.sched_getscheduler(tid), nice=os.getpriority(os.PRIO_PROCESS, tid))
        done.set()

    realtime = may_use_realtime()

    def control() -> None:
        if realtime:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        policy.load_async(str(paths[1]), loaded)

    thread = threading.Thread(target=control)
    thread.start()
    thread.join()
    assert done.wait(30), "the checkpoint never loaded"
    assert seen["error"] is None and policy.path == str(paths[1])
    assert seen["policy"] == os.SCHED_OTHER and seen["nice"] >= 0, (seen, "FIFO granted" if realtime else "")
    policy.reset()
    assert not np.allclose(policy.act(frame)[0], before)


def test_a_domain_a_live_process_holds_is_in_use_and_never_handed_to_a_test():
    """A session still starting (nothing bound yet) holds its domain through its environment: a test
    that reused the id would talk to that session's nodes (seen in CI: another session's recorder)."""
    import os
    import subprocess
    import sys

    from mile_ros.graph.launcher import domains_in_use
    from mile_ros.nodes.probe import unique_domain_id

    first = unique_domain_id()
    env = dict(os.environ, ROS_DOMAIN_ID=str(first))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        assert first in domains_in_use()
        assert first not in {unique_domain_id() for _ in range(200)}
    finally:
        holder.kill()
        holder.wait()
