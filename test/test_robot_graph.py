"""The real-robot graph without a robot, every node in its own process over DDS: a video file through
webcam_node, R3M (untrained weights in R3M's layout) in r3m_encoder, the zero-motion starting policy in
policy_node, arbitration, widowx_driver on its kinematic backend, and ps3_teleop reading an SDL virtual
pad. Taking over with the stick up must move the arm forward; releasing hands back to the still policy."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier


def test_takeover_moves_the_arm_through_the_whole_graph(tmp_path):
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool

    from mile_ros.graph.joy_mapping import load_joy_mapping
    from mile_ros.nodes.common import qos, stamp_ns
    from mile_ros.robot.initial_policy import still_policy_checkpoint
    from mile_ros.robot.r3m import save_random_r3m_checkpoint
    from mile_ros.testing.virtual_pad import run_with_virtual_pad

    video = tmp_path / "scene.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for i in range(20):
        writer.write(np.full((120, 160, 3), 10 * i, np.uint8))
    writer.release()
    r3m = save_random_r3m_checkpoint(tmp_path / "r3m.pt")
    policy = still_policy_checkpoint(hidden=(32, 32)).save(tmp_path / "initial.pt")
    sdl = load_joy_mapping("sdl")

    domain_id = os.getpid() % 100 + 120
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    commands = {
        "webcam_node": ["-p", f"source:={video}", "-p", "loop:=true", "-p", "rate_hz:=5.0"],
        "r3m_encoder": ["-p", f"checkpoint:={r3m}", "-p", "cpu_threads:=1"],
        "policy_node": ["-p", f"checkpoint:={policy}", "-p", "obs_source:=r3m+ee"],
        "arbitration_node": ["-p", "joy_mapping:=sdl", "-p", "watchdog_timeout_s:=10.0"],
        "widowx_driver": ["-p", "backend:=sim", "-p", "joy_mapping:=sdl", "-p", "command_timeout_s:=10.0"],
    }
    procs = {name: subprocess.Popen([sys.executable, "-m", f"mile_ros.nodes.{name}", "--ros-args", *args],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, args in commands.items()}
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    teleop = ctx.Process(target=run_with_virtual_pad, args=(child, ["-p", "joy_mapping:=sdl"], domain_id, True))
    teleop.start()

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("graph_test", context=context)
    executed, poses, embeddings, flags = [], [], [], []
    node.create_subscription(JointState, "/mile/executed_action", executed.append, qos("reliable"))
    node.create_subscription(PoseStamped, "/robot/ee_pose", poses.append, qos("sensor"))
    node.create_subscription(JointState, "/camera/embedding", lambda m: embeddings.append(stamp_ns(m)),
                             qos("sensor"))
    node.create_subscription(Bool, "/mile/intervention", lambda m: flags.append(m.data), qos("reliable"))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin_until(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited while waiting for {what}:\n{proc.stdout.read()}")
            executor.spin_once(timeout_sec=0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def pad(*cmd) -> None:
        parent.send(cmd)
        assert parent.poll(30), f"teleop process did not answer {cmd}"
        parent.recv()

    def x() -> float:
        return poses[-1].pose.position.x

    try:
        spin_until(lambda: any(m.header.frame_id == "robot" for m in executed), 240, "the policy's commands")
        robot_cmd = next(m for m in executed if m.header.frame_id == "robot")
        assert list(robot_cmd.position) == [0.0, 0.0, 0.0, 0.0]  # the still policy
        # each command answers an image's embedding, by stamp (embeddings are best effort: wait for a match)
        spin_until(lambda: any(stamp_ns(m) in embeddings for m in executed if m.header.frame_id == "robot"), 120,
                   "a command stamped like an embedding")
        start = x()
        pad("axis", 1, -32768)  # stick up: dx = +1
        pad("button", sdl.buttons["takeover"], 1)
        n = len(executed)
        spin_until(lambda: sum(m.header.frame_id == "human" for m in executed[n:]) >= 5, 240, "5 human steps")
        spin_until(lambda: x() > start + 0.02, 30, "the arm to move forward")
        human = [m for m in executed[n:] if m.header.frame_id == "human"]
        assert human[-1].position[0] == 1.0 and any(flags)
        pad("button", sdl.buttons["takeover"], 0)
        n = len(executed)
        spin_until(lambda: sum(m.header.frame_id == "robot" for m in executed[n:]) >= 6, 240, "the policy back")
        settled = x()
        m = len(executed)
        spin_until(lambda: len(executed) >= m + 2, 120, "two more policy steps")
        assert abs(x() - settled) < 1e-9  # the still policy holds the arm where the human left it
    finally:
        pad("stop")
        teleop.join(timeout=20)
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.communicate(timeout=30)  # drains the pipe, or a chatty node blocks on exit
        node.destroy_node()
        context.try_shutdown()
