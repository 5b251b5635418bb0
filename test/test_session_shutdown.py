"""``mile-ros sim`` stops as a whole: Ctrl-C (then resumes from its directory), or a node's death (named)."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from sim_session import sim_command, wait_line

from mile_ros.nodes.probe import unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier


def node_pids(run_dir, node: str = "") -> list[int]:
    """Node processes of this run (their command line names its parameter file)."""
    out = subprocess.run(
        ["pgrep", "-f", f"mile_ros.nodes.{node}.*{run_dir}/run_params.yaml"], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split()]


def start(run, init, domain):
    # two training episodes: the resume below checks both
    cmd = sim_command(run, init, domain, "--episodes", "2")
    # Started with SIGINT ignored, as a shell starts background jobs (and some CI runners): Ctrl-C
    # handling must not depend on the disposition the command inherits.
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def test_ctrl_c_stops_everything_and_the_run_resumes(tmp_path, init):
    run = tmp_path / "run"
    proc = start(run, init, unique_domain_id())
    wait_line(proc, "eval episode 0")
    assert node_pids(run), "no node processes found while running"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "resume" in err
    assert node_pids(run) == [], "node processes outlived Ctrl-C"
    done_before = [e["name"] for e in json.loads((run / "session.json").read_text())["episodes"]]
    assert done_before and done_before[0] == "iter_000/eval_000"
    # The same command continues: no episode twice, the update and the final evaluation happen.
    again = start(run, init, unique_domain_id())
    out, err = again.communicate(timeout=400)
    assert again.returncode == 0, out[-2000:] + err[-2000:]
    state = json.loads((run / "session.json").read_text())
    names = [e["name"] for e in state["episodes"]]
    assert (
        sorted(names)
        == sorted(set(names))
        == ["iter_000/eval_000", "iter_000/train_000", "iter_000/train_001", "iter_001/eval_000"]
    )
    assert names[: len(done_before)] == done_before
    assert state["checkpoints"]["1"].endswith("update_001.pt")


def test_a_dead_node_stops_the_graph_and_is_named(tmp_path, init):
    run = tmp_path / "run"
    proc = start(run, init, unique_domain_id())
    wait_line(proc, "eval episode 0")
    victims = node_pids(run, "recorder_node")
    assert len(victims) == 1
    subprocess.run(["kill", "-9", str(victims[0])], check=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "node recorder_node was killed by SIGKILL" in err
    assert node_pids(run) == []
