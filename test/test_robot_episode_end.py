"""Real-robot episode ends through the recorder, over DDS with real processes: widowx_driver (sim backend)
ends episodes from the pad's success / discard buttons and on pad loss; the recorder writes the reason,
marks a discarded bag (kept on disk) and records /robot/safety and /teleop/status; the dataset builder
trains on the success episode and leaves the discarded one out."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import Joy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mile_ros.graph.bag_dataset import build_dataset
from mile_ros.graph.bag_episode import read_bag
from mile_ros.graph.topics import ACTION_NAMES, SOURCE_ROBOT
from mile_ros.nodes.common import to_time, vector_msg
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

PS3 = {"success": 3, "failure": 1, "discard": 2}
STEPS = 4


def joy(button: int | None) -> Joy:
    msg = Joy()
    msg.header.stamp = to_time(time.time_ns())
    msg.axes = [0.0] * 6
    msg.buttons = [int(i == button) for i in range(17)]
    return msg


def pad(state: str) -> String:
    return String(data=json.dumps({"state": state, "name": "test pad", "message": ""}))


def run_episode(probe: Probe, bag, index: int, end) -> dict:
    """Record one episode of STEPS robot steps (observation, proposal, command with one stamp each),
    end it with ``end()``, stop the recorder and return its summary."""
    probe.record("recorder_node", str(bag), {"episode": index})
    reset = probe.call("/episode/reset", Trigger)
    assert reset.success, reset.message
    ends_before = len(probe.messages("/episode/end"))
    for step in range(STEPS):
        stamp = time.time_ns()
        probe.publish("/mile/observation", vector_msg(stamp, ["obs_00", "obs_01"], [float(index), float(step)]))
        probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, [0.1, 0.0, 0.0, 0.0]))
        probe.publish("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, [0.1, 0.0, 0.0, 0.0], SOURCE_ROBOT))
        time.sleep(0.02)  # distinct stamps, and the driver's command counter sees each one
    end()
    probe.wait_count("/episode/end", ends_before + 1, timeout=30)
    return probe.stop_recording("recorder_node", str(bag))


def press(probe: Probe, name: str) -> None:
    probe.publish("/teleop/joy", joy(PS3[name]))
    time.sleep(0.1)
    probe.publish("/teleop/joy", joy(None))


def test_success_discard_and_pad_lost_are_recorded(tmp_path):
    domain = unique_domain_id()
    driver = NodeProcess(
        "widowx_driver",
        domain,
        {"backend": "sim", "joy_mapping": "ps3", "command_timeout_s": 2.0, "state_rate_hz": 20.0},
        tmp_path,
    )
    recorder = NodeProcess("recorder_node", domain, {"output_dir": str(tmp_path), "drain_s": 5.0}, tmp_path)
    probe = Probe(domain)
    try:
        probe.listen("/episode/end")
        for topic, n in (("/mile/executed_action", 2), ("/teleop/joy", 1), ("/teleop/status", 2),
                         ("/mile/observation", 1), ("/mile/proposed_action", 1)):
            probe.wait_matched(topic, n, timeout=120)
        probe.wait_publisher("/episode/end", timeout=60)
        probe.publish("/teleop/status", pad("connected"))
        bags = tmp_path / "bags"

        success = run_episode(probe, bags / "ep0", 0, lambda: press(probe, "success"))
        discarded = run_episode(probe, bags / "ep1", 1, lambda: press(probe, "discard"))
        lost = run_episode(probe, bags / "ep2", 2, lambda: probe.publish("/teleop/status", pad("disconnected")))

        assert (success["success"], success["end_reason"], success["discarded"]) == (True, "success", False)
        assert success["steps"] == STEPS and success["steps_complete"] and success["complete"], success
        assert (discarded["success"], discarded["end_reason"], discarded["discarded"]) == (False, "discard", True)
        assert (lost["success"], lost["end_reason"], lost["discarded"]) == (False, "pad_lost", False)
        reasons = [m.header.frame_id for m in probe.messages("/episode/end")]
        assert reasons == ["success", "discard", "pad_lost"]

        # The discarded bag stays on disk, marked in its metadata, with the robot topics in it.
        bag = read_bag(bags / "ep1")
        assert bag.complete and bag.metadata["discarded"] is True and bag.metadata["end_reason"] == "discard"
        topics = {m.topic for m in bag.messages}
        assert {"/robot/safety", "/teleop/status", "/robot/success", "/episode/end"} <= topics, topics
        safety = bag.topic("/robot/safety")[-1].decode()
        assert "accepted" in safety.name and "estopped" in safety.name
        status = [json.loads(m.decode().data)["state"] for m in read_bag(bags / "ep2").topic("/teleop/status")]
        assert status[0] == "connected" and status[-1] == "disconnected", status

        report = build_dataset([bags / "ep0", bags / "ep1", bags / "ep2"])
        assert report.discarded == [bags / "ep1"]
        assert bags / "ep1" not in report.used and (bags / "ep1" / "episode.json").is_file()
        assert report.used == [bags / "ep0", bags / "ep2"]
        assert len(report.dataset) == 2 * STEPS
        assert "1 discarded by the operator" in report.summary()
        assert driver.alive(), driver.output()[-2000:]
        assert recorder.alive(), recorder.output()[-2000:]
    finally:
        probe.close()
        driver.stop()
        recorder.stop()
