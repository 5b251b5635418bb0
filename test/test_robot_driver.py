"""The widowx_driver node (sim backend) in its own process, over DDS: commands in metres, refusal of bad
commands, the e-stop latch, the command timeout, reset/home; and a clear failure without interbotix."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

HOME = (0.3, 0.0, 0.2)


@pytest.fixture
def driver():
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState, Joy
    from std_msgs.msg import Bool, String
    from std_srvs.srv import SetBool, Trigger

    from mile_ros.nodes.common import qos

    domain_id = os.getpid() % 100 + 20
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mile_ros.nodes.widowx_driver",
            "--ros-args",
            "-p",
            "backend:=sim",
            "-p",
            "max_step_m:=0.01",
            "-p",
            "max_motion_m:=0.015",
            "-p",
            "command_timeout_s:=0.3",
            "-p",
            "state_rate_hz:=50.0",
            "-p",
            "workspace_max:=[0.45, 0.25, 0.225]",
            "-p",
            "joy_mapping:=sdl",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("driver_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    class Harness:
        def __init__(self) -> None:
            self.poses: list = []
            self.safety: list = []
            self.states: list = []

        def spin_until(self, predicate, timeout=60.0, what="condition"):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if predicate():
                    return
                if proc.poll() is not None:
                    raise AssertionError(f"driver exited while waiting for {what}:\n{proc.stdout.read()}")
                executor.spin_once(timeout_sec=0.02)
            raise AssertionError(f"timed out waiting for {what}")

        def position(self):
            n = len(self.poses)
            self.spin_until(lambda: len(self.poses) > n + 1, what="fresh poses")
            p = self.poses[-1].pose.position
            return np.array([p.x, p.y, p.z])

        def counters(self):
            n = len(self.safety)
            self.spin_until(lambda: len(self.safety) > n + 1, what="fresh safety status")
            return dict(zip(self.safety[-1].name, self.safety[-1].position))

        def command(self, action, source="robot"):
            msg = JointState()
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = source
            msg.name = ["dx", "dy", "dz", "gripper"]
            msg.position = [float(v) for v in action]
            self.pub.publish(msg)
            n = len(self.poses)
            self.spin_until(lambda: len(self.poses) > n + 2, what="the command to be applied")

        def call(self, client, request):
            self.spin_until(lambda: client.wait_for_service(timeout_sec=0.0), what=f"service {client.srv_name}")
            future = client.call_async(request)
            self.spin_until(future.done, what=f"answer of {client.srv_name}")
            return future.result()

    h = Harness()
    node.create_subscription(PoseStamped, "/robot/ee_pose", h.poses.append, qos("sensor"))
    node.create_subscription(JointState, "/robot/safety", h.safety.append, qos("reliable"))
    node.create_subscription(JointState, "/robot/state", h.states.append, qos("sensor"))
    h.ends = []
    h.successes = []
    node.create_subscription(JointState, "/episode/end", h.ends.append, qos("reliable"))
    node.create_subscription(Bool, "/robot/success", lambda m: h.successes.append(m.data), qos("reliable"))
    h.joy = node.create_publisher(Joy, "/teleop/joy", qos("reliable"))
    h.status = node.create_publisher(String, "/teleop/status", qos("latched"))
    h.String = String
    h.pub = node.create_publisher(JointState, "/mile/executed_action", qos("reliable"))
    h.estop = node.create_client(Trigger, "/robot/estop")
    h.clear = node.create_client(Trigger, "/robot/clear_estop")
    h.reset = node.create_client(Trigger, "/episode/reset")
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    change_state = node.create_client(ChangeState, "/widowx_driver/change_state")
    h.transition = lambda label: h.call(change_state, ChangeState.Request(transition=Transition(label=label))).success
    h.SetBool, h.Trigger = SetBool, Trigger
    try:
        h.spin_until(lambda: h.pub.get_subscription_count() > 0 and len(h.poses) > 2, 120, "the driver")
        yield h
    finally:
        node.destroy_node()
        context.try_shutdown()
        proc.terminate()
        proc.communicate(timeout=20)  # drains the pipe, or a chatty node blocks on exit


def test_driver_over_dds(driver):
    h = driver
    np.testing.assert_allclose(h.position(), HOME)
    assert list(h.states[-1].name) == ["ee_x", "ee_y", "ee_z", "gripper"]

    h.command([0.5, -1.0, 0.0, 0.0])  # 5 mm forward, 1 cm right
    np.testing.assert_allclose(h.position(), [0.305, -0.01, 0.2], atol=1e-9)

    h.command([1.0, 1.0, 1.0, 1.0])  # 1.73 cm asked, 1.5 cm allowed; gripper closes
    moved = h.position() - np.array([0.305, -0.01, 0.2])
    assert np.linalg.norm(moved) == pytest.approx(0.015)
    counters = h.counters()
    assert counters["clipped_motion"] == 1 and counters["gripper_closed"] == 1.0

    for _ in range(3):  # the ceiling at z = 0.225
        h.command([0.0, 0.0, 1.0, 1.0])
    assert h.position()[2] == pytest.approx(0.225)
    assert h.counters()["clipped_workspace"] >= 1

    before = h.position()
    h.command([float("nan"), 0.0, 0.0, 0.0], source="human")
    h.command([0.0, 2.0, 0.0, 0.0], source="human")
    np.testing.assert_array_equal(h.position(), before)
    assert h.counters()["refused_invalid"] == 2

    time.sleep(0.5)  # no commands for longer than command_timeout_s: the arm holds, counted once
    counters = h.counters()
    assert counters["timeouts"] >= 1 and counters["holding"] == 1.0

    assert h.call(h.estop, h.Trigger.Request()).success
    h.command([1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(h.position(), before)
    assert h.counters()["estopped"] == 1.0
    answer = h.call(h.reset, h.Trigger.Request())
    assert not answer.success and "e-stop latched" in answer.message  # no homing while latched
    assert h.call(h.clear, h.Trigger.Request()).success
    h.command([1.0, 0.0, 0.0, 0.0])
    assert h.position()[0] == pytest.approx(before[0] + 0.01)

    assert h.transition("deactivate")  # the lifecycle node paused: the arm holds, commands ignored
    paused = h.position()
    h.command([1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(h.position(), paused)
    answer = h.call(h.reset, h.Trigger.Request())
    assert not answer.success and "inactive" in answer.message  # no episode while inactive
    assert h.transition("activate")
    answer = h.call(h.reset, h.Trigger.Request())  # episode start: home, running again
    assert answer.success
    np.testing.assert_allclose(h.position(), HOME)
    h.command([0.0, 0.0, -1.0, 0.0])
    np.testing.assert_allclose(h.position(), [0.3, 0.0, 0.19], atol=1e-9)


def test_operator_buttons_end_episodes(driver):
    from sensor_msgs.msg import Joy

    from mile_ros.graph.joy_mapping import load_joy_mapping

    h, sdl = driver, load_joy_mapping("sdl")

    def press(which: str) -> None:
        for pressed in ((which,), ()):
            axes, buttons = sdl.encode([0, 0, 0, 0], pressed)
            h.joy.publish(Joy(axes=axes, buttons=buttons))
            h.position()  # let it arrive

    h.spin_until(lambda: h.joy.get_subscription_count() > 0, what="the driver's Joy subscription")
    h.command([1.0, 0, 0, 0])
    h.command([1.0, 0, 0, 0])
    press("success")
    h.spin_until(lambda: bool(h.ends), what="/episode/end")
    end = h.ends[-1]
    assert end.header.frame_id == "success" and dict(zip(end.name, end.position))["steps"] == 2.0
    h.spin_until(lambda: h.successes and h.successes[-1], what="/robot/success true")
    where = h.position()
    h.command([1.0, 0, 0, 0])  # ended: the arm holds until the next reset
    np.testing.assert_array_equal(h.position(), where)
    press("failure")  # no episode running: no second end
    assert len(h.ends) == 1
    assert h.transition("deactivate") and h.transition("activate")  # ended: activating resumes nothing
    h.command([1.0, 0, 0, 0])
    np.testing.assert_array_equal(h.position(), where)

    assert h.call(h.reset, h.Trigger.Request()).success
    h.spin_until(lambda: not h.successes[-1], what="/robot/success false after reset")
    h.command([0.0, 1.0, 0, 0])
    press("discard")
    h.spin_until(lambda: len(h.ends) == 2, what="the discarded episode's end")
    assert h.ends[-1].header.frame_id == "discard" and dict(zip(h.ends[-1].name, h.ends[-1].position))["steps"] == 1
    h.command([0.0, 1.0, 0, 0])
    press("home")
    np.testing.assert_allclose(h.position(), HOME)


def test_pad_loss_ends_the_episode_and_holds(driver):
    import json

    h = driver

    def pad(state: str) -> None:
        h.status.publish(h.String(data=json.dumps({"state": state, "name": "pad", "message": state})))

    h.spin_until(lambda: h.status.get_subscription_count() > 0, what="the driver's status subscription")
    pad("connected")
    h.command([1.0, 0, 0, 0])
    pad("disconnected")  # mid-episode
    h.spin_until(lambda: bool(h.ends), what="the pad_lost episode end")
    assert h.ends[-1].header.frame_id == "pad_lost"
    where = h.position()
    h.command([1.0, 0, 0, 0])
    np.testing.assert_array_equal(h.position(), where)  # holds

    answer = h.call(h.reset, h.Trigger.Request())  # the next episode, still without a pad
    assert answer.success and "when the gamepad is back" in answer.message
    np.testing.assert_allclose(h.position(), HOME)
    h.command([1.0, 0, 0, 0])
    np.testing.assert_allclose(h.position(), HOME)  # waiting: holds
    pad("connected")
    h.position()  # let the status arrive
    h.command([1.0, 0, 0, 0])
    assert h.position()[0] == pytest.approx(HOME[0] + 0.01)
    assert len(h.ends) == 1


def test_interbotix_backend_missing_fails_clearly():
    env = {**os.environ, "ROS_DOMAIN_ID": str(os.getpid() % 100 + 20), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    result = subprocess.run(
        [sys.executable, "-m", "mile_ros.nodes.widowx_driver"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    text = result.stdout + result.stderr
    assert "interbotix_xs_modules" in text and "is not installed" in text and "backend:=sim" in text
