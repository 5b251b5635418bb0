"""``mile-ros screen``: the operator's view, in a real terminal (tmux) against a real simulated session.

The screen subscribes to the session's topics and the recorder's parameter events over DDS; tmux's
``capture-pane`` reads what a person would see while ``mile-ros sim`` runs: the episode and its step
moving, the predicted ``P(I=1|s)`` changing, who drives, the learning curve (compared with the run's own
metrics.json) and the trainer's update.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mile_ros.operator.state import ScreenState
from mile_ros.operator.view import render, sparkline

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

MAPPING = {"takeover": 4, "success": 3, "failure": 1, "discard": 2, "home": 10}


def test_state_counts_steps_by_stamp_and_builds_the_curve():
    now = [100.0]
    s = ScreenState(clock=lambda: now[0])
    s.on_executed(1, "robot")  # before any episode: not counted
    s.on_episode_info({"iteration": 0, "episode": 0, "mode": "train", "seed": 10000})
    for stamp, who in ((5, "robot"), (5, "robot"), (6, "human"), (7, "human"), (7, "human")):
        s.on_executed(stamp, who)
    assert (s.episode.steps, s.episode.human_steps) == (3, 2)
    now[0] = 102.5
    s.on_episode_end("time_limit", {"steps": 3.0, "success": 0.0})
    s.on_executed(8, "robot")  # late, after the end
    now[0] = 110.0
    assert s.episode.steps == 3 and s.elapsed() == pytest.approx(2.5) and s.episode.success is False
    results = [
        ("iter_000/eval_000", {"iteration": 0, "mode": "eval", "success": True}),
        ("iter_000/eval_001", {"iteration": 0, "mode": "eval", "success": False}),
        ("iter_000/train_000", {"iteration": 0, "mode": "train", "success": True, "steps": 40, "interventions": 10}),
        ("iter_000/train_001", {"iteration": 0, "mode": "train", "success": False, "discarded": True}),
    ]
    for name, result in results:
        s.on_progress({"text": name, "episode": name, "result": result})
    s.on_progress({"text": "again", "episode": "iter_000/eval_000", "result": results[0][1]})  # latched repeat
    point = s.curve[0]
    assert (point.eval_rate, point.train_rate, point.intervention_rate) == (0.5, 1.0, 0.25)
    s.on_progress({"text": "iteration 0: training MILE on the bags so far"})
    assert s.trainer.training and s.trainer.update == 1 and s.trainer_fraction() is None
    s.on_progress({"text": "iteration 0: ... update 1", "update": {"update": 1, "seconds": 20.0, "rows": 40}})
    s.on_progress({"text": "iteration 1: training MILE on the bags so far"})
    now[0] += 5.0
    assert s.trainer.update == 2 and s.trainer_fraction() == pytest.approx(0.25)
    assert sparkline([0.0, 0.5, 1.0]) == " ▄█"


def test_view_shows_the_takeover_and_lit_buttons():
    from rich.console import Console

    s = ScreenState()
    s.on_episode_info({"iteration": 2, "episode": 1, "mode": "train"})
    s.on_probability(0.731)
    s.on_intervention(True)
    s.on_joy([0, 0, 0, 1])  # square held
    console = Console(width=100, record=True, color_system=None)
    console.print(render(s, MAPPING, "ps3"))
    text = console.export_text()
    assert "iteration 2 · intervention episode 1" in text and "P(I=1|s) = 0.731" in text
    assert "TAKEOVER: HUMAN DRIVING" in text and "[square]" in text and "end the episode: success" in text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_screen_in_tmux_follows_a_simulated_session(tmp_path):
    pytest.importorskip("rclpy")
    pytest.importorskip("metaworld")
    import torch
    from test_session_sim import mediocre_policy

    from mile_ros.cli.sim import default_config
    from mile_ros.learning import MileCheckpoint, build_policy, load_checkpoint
    from mile_ros.nodes.probe import Probe, unique_domain_id

    init = tmp_path / "init.pt"
    mediocre_policy(init)
    # A mental model beside the policy, so the policy node predicts P(I=1|s) from the first episode on
    # (c = sigma = 5 keeps it between about 0.75 and 0.9 along an episode, not saturated).
    policy = load_checkpoint(init)
    torch.manual_seed(0)
    mental = build_policy(policy.spec.stacked_dim, 4, False, (64, 64))
    MileCheckpoint(policy.spec, policy.policy, mental, cost=5.0, sigma=5.0).save(init)
    config = yaml.safe_load(default_config().read_text())
    config["simulated_human"]["ros__parameters"]["target_intervention_rate"] = 0.9  # as test_session_sim
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    domain = unique_domain_id()
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    sock = f"mile-screen-{os.getpid()}"
    tmux = ["tmux", "-L", sock]
    screen = f"{sys.executable} -m mile_ros.cli.main screen --domain-id {domain} --run-dir {run} --refresh-hz 10"
    subprocess.run(
        [*tmux, "-f", "/dev/null", "new-session", "-d", "-s", "op", "-x", "110", "-y", "60", screen],
        check=True,
        env=env,
    )
    frames: list[str] = []
    sim = None
    probe = Probe(domain)  # what the policy node really published, to compare with the screen
    probe.listen("/mile/intervention_probability", depth=5000)
    try:
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mile_ros.cli.main",
                "sim",
                *("--task", "drawer-open-v3", "--iterations", "1", "--episodes", "1", "--eval-episodes", "1"),
                *("--out", str(run), "--init-policy", str(init), "--max-episode-steps", "80", "--epochs", "5"),
                *("--mental-rollouts", "2", "--domain-id", str(domain), "--config", str(tmp_path / "sim.yaml")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 400
        while sim.poll() is None and time.monotonic() < deadline:
            pane = subprocess.run([*tmux, "capture-pane", "-p", "-t", "op"], capture_output=True, text=True)
            frames.append(pane.stdout)
            time.sleep(0.1)
        time.sleep(2.0)  # the last progress message
        frames.append(subprocess.run([*tmux, "capture-pane", "-p", "-t", "op"], capture_output=True, text=True).stdout)
    finally:
        if sim is not None and sim.poll() is None:
            sim.terminate()
        sim_out = sim.communicate(timeout=60)[0] if sim is not None else ""
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        tmux_dir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmux_dir / sock).unlink(missing_ok=True)  # the server's socket file stays behind otherwise
        published = {f"{m.position[0]:.3f}" for m in probe.messages("/mile/intervention_probability")}
        probe.close()
    assert sim.returncode == 0, sim_out[-3000:]
    assert frames and "mile_ros operator screen" in frames[-1], frames[-1:]

    # The episode and its step, moving within one episode.
    steps: dict[str, list[int]] = {}
    probabilities: set[str] = set()
    for frame in frames:
        episode = re.search(r"iteration (\d+) · (intervention episode|evaluation \(policy alone\)) (\d+)", frame)
        step = re.search(r"step (\d+)\s+elapsed (\d+):(\d+\.\d)", frame)
        if episode and step:
            steps.setdefault(episode.group(0), []).append(int(step.group(1)))
        p = re.search(r"P\(I=1\|s\) = (\d\.\d{3})", frame)
        if p:
            probabilities.add(p.group(1))
    assert "iteration 0 · intervention episode 0" in steps, list(steps)
    moving = [name for name, seen in steps.items() if len(set(seen)) >= 2 and seen == sorted(seen)]
    assert moving, steps
    assert len(probabilities) >= 2, probabilities  # the prediction updates as the arm moves
    assert probabilities <= published, probabilities - published  # each one the policy node's own
    assert any(re.search(r"human steps [1-9]", f) for f in frames), "no takeover seen on the screen"

    # The end: the learning curve as the run's metrics say, the update done, the session complete.
    last = frames[-1]
    metrics = json.loads((run / "metrics.json").read_text())["iterations"]
    row = re.search(r"^\S\s+0\s+(\d\.\d\d)\s+\S*\s*(\d\.\d\d)\s+(\d\.\d\d)", last, re.M)
    assert row, last
    assert float(row.group(1)) == pytest.approx(metrics[0]["eval_success_rate"], abs=0.005)
    assert float(row.group(2)) == pytest.approx(metrics[0]["train_success_rate"], abs=0.005)
    assert any("update 1 done" in f for f in frames) and "SESSION COMPLETE" in last, last
