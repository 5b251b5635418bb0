"""SIGTERM to real node processes mid-episode takes the same clean path as SIGINT.

rclpy turns SIGTERM into a shutdown of its context, not into an exception in the main thread; a node
whose main thread waits in Python (the session manager waiting for an episode's end) then kept waiting
(seen: still running 30 s later). Here a real recorder and a real session manager get a real SIGTERM
in the middle of an episode; each must exit within a few seconds, and what is on disk is checked:
the recorder's bag closed as a rosbag2 bag marked interrupted, the session's record intact.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import String
from std_srvs.srv import Trigger

from mile_ros.graph.bag_dataset import build_dataset, episode_steps
from mile_ros.graph.bag_episode import BagError, read_bag
from mile_ros.graph.topics import ACTION_NAMES
from mile_ros.nodes.common import vector_msg
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

EXIT_WITHIN_S = 5.0


def publish_step(probe: Probe, stamp: int, i: int) -> None:
    probe.publish("/mile/observation", vector_msg(stamp, ["obs_0", "obs_1", "obs_2"], np.full(3, float(i))))
    probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, np.zeros(4)))
    probe.publish("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, np.zeros(4), "robot"))


def commands_on_disk(bag: Path) -> int:
    try:
        return len(read_bag(bag).topic("/mile/executed_action"))
    except (BagError, FileNotFoundError):  # nothing flushed yet
        return 0


def sigterm(node: NodeProcess) -> tuple[int, float]:
    """Send SIGTERM; return the exit code and the seconds it took (SIGKILL after the limit: a failure)."""
    start = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    try:
        code = node.proc.wait(EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        node.kill()
        pytest.fail(f"{node.node} still running {EXIT_WITHIN_S} s after SIGTERM:\n{node.output()[-2000:]}")
    return code, time.monotonic() - start


def assert_interrupted_bag(bag: Path, steps: int) -> None:
    read = read_bag(bag)
    assert read.complete and (bag / "metadata.yaml").is_file()  # closed: rosbag2 readers open it
    assert read.metadata["complete"] is False and "stopped before the episode ended" in read.metadata["interrupted"]
    assert len(episode_steps(read).stamps) == steps  # every step that arrived is kept
    report = build_dataset([bag])
    assert report.used == [] and [p for p, _ in report.interrupted] == [bag]  # never trained on


def test_recorder_exits_on_sigterm_mid_episode_with_its_bag_closed(tmp_path):
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess("recorder_node", domain, {"output_dir": str(tmp_path), "drain_s": 1.0}, tmp_path)
    try:
        for topic in ("/mile/observation", "/mile/proposed_action", "/mile/executed_action"):
            probe.wait_matched(topic)
        bag = tmp_path / "iter_000" / "train_000"
        probe.record("recorder_node", str(bag), {"mode": "train"})
        for i in range(20):
            publish_step(probe, 10**9 + i * 5 * 10**7, i)
        deadline = time.monotonic() + 20
        while commands_on_disk(bag) < 20:
            assert time.monotonic() < deadline, f"only {commands_on_disk(bag)} of 20 commands on disk"
            time.sleep(0.05)
        code, _took = sigterm(node)
        assert code == 0, node.output()[-2000:]  # the same exit as after SIGINT
        assert_interrupted_bag(bag, 20)
    finally:
        node.stop()
        probe.close()


class StandIns:
    """The nodes the session manager drives, other than the recorder, in the probe's process: the
    bridge's ``seed`` parameter and services, the bridge and policy as active lifecycle nodes, the
    policy's and arbitration's resets, and the policy's
    answer on /mile/active_checkpoint. They only answer; the episode never ends by itself."""

    def __init__(self, probe: Probe) -> None:
        from rclpy.lifecycle import LifecycleNode

        self.bridge = LifecycleNode("metaworld_bridge", context=probe.context)  # a lifecycle node, active
        self.bridge.trigger_configure()
        self.bridge.trigger_activate()
        self.bridge.declare_parameter("seed", 0)
        self.policy = LifecycleNode("policy_node", context=probe.context)
        self.policy.trigger_configure()
        self.policy.trigger_activate()
        self.calls: list[str] = []
        for name, kind in (
            ("/episode/reset", Trigger),
            ("/policy/reset", Trigger),
            ("/arbitration/reset", Trigger),
        ):
            self.bridge.create_service(kind, name, lambda req, res, n=name: self.answer(n, res))
        probe.executor.add_node(self.bridge)
        probe.executor.add_node(self.policy)
        self.probe = probe
        probe.node.create_subscription(String, "/mile/checkpoint", self.on_checkpoint, _latched())
        self.active = probe.node.create_publisher(String, "/mile/active_checkpoint", _latched())

    def answer(self, name: str, response):
        self.calls.append(name)
        response.success = True
        return response

    def on_checkpoint(self, msg: String) -> None:
        self.active.publish(String(data=msg.data))  # the policy node "switched"

    def close(self) -> None:
        for node in (self.bridge, self.policy):
            self.probe.executor.remove_node(node)
            node.destroy_node()


def _latched():
    from mile_ros.nodes.common import qos

    return qos("latched")


def test_session_manager_and_recorder_exit_on_sigterm_mid_episode(tmp_path):
    domain = unique_domain_id()
    run = tmp_path / "run"
    probe = Probe(domain)
    stand_ins = StandIns(probe)
    recorder = NodeProcess("recorder_node", domain, {"output_dir": str(run / "bags"), "drain_s": 1.0}, tmp_path)
    init = tmp_path / "initial.pt"
    init.write_bytes(b"not loaded by these nodes")  # the policy node is a stand-in
    manager = NodeProcess(
        "session_manager",
        domain,
        {
            "run_dir": str(run),
            "initial_checkpoint": str(init),
            "iterations": 1,
            "episodes": 1,
            "eval_episodes": 1,
            "use_simulated_human": False,
            "service_timeout_s": 30.0,
        },
        tmp_path,
    )
    try:
        for topic in ("/mile/observation", "/mile/proposed_action", "/mile/executed_action"):
            probe.wait_matched(topic)
        deadline = time.monotonic() + 60
        while "/episode/reset" not in stand_ins.calls:  # recorder started, episode running
            assert manager.alive(), manager.output()[-2000:]
            assert time.monotonic() < deadline, f"no episode started: {stand_ins.calls}\n{manager.output()[-2000:]}"
            time.sleep(0.05)
        bag = run / "bags" / "iter_000" / "eval_000"  # the session's first episode
        assert bag.is_dir()
        for i in range(10):
            publish_step(probe, 10**9 + i * 5 * 10**7, i)
        while commands_on_disk(bag) < 10:
            assert time.monotonic() < deadline, f"only {commands_on_disk(bag)} of 10 commands on disk"
            time.sleep(0.05)

        code, _took = sigterm(manager)
        assert code == 128 + signal.SIGTERM, manager.output()[-2000:]  # the shell's convention, as SIGINT's 130
        state = json.loads((run / "session.json").read_text())  # intact, and the episode not counted as done
        assert state["initial_checkpoint"] == str(init.resolve())
        assert state["episodes"] == [] and state["checkpoints"] == {}
        assert "Traceback" not in manager.output()

        code, _took = sigterm(recorder)
        assert code == 0, recorder.output()[-2000:]
        assert_interrupted_bag(bag, 10)
    finally:
        manager.stop()
        recorder.stop()
        stand_ins.close()
        probe.close()
