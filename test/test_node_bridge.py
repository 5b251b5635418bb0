"""metaworld_bridge as a process: lockstep stepping, /clock, episode end, reset, rendered camera."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from std_srvs.srv import Trigger

from mile_ros.graph.topics import ACTION_NAMES
from mile_ros.nodes.common import stamp_ns, vector_msg
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

TASK = "drawer-open-v3"


def test_lockstep_bridge_matches_the_environment(tmp_path):
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess(
        "metaworld_bridge",
        domain,
        {"task": TASK, "lockstep": True, "max_episode_steps": 6, "render": True, "image_size": 64, "seed": 5},
        tmp_path,
    )
    try:
        for t in (
            "/robot/state",
            "/clock",
            "/episode/end",
            "/robot/success",
            "/camera/image_raw",
            "/robot/ee_pose",
        ):
            probe.listen(t)
        # The node subscribes after building the task: 30 s and more on two cores shared with other runs.
        probe.wait_matched("/mile/executed_action", timeout=120)
        res = probe.call("/episode/reset", Trigger, timeout=60)
        assert res.success, res.message
        states = probe.wait_count("/robot/state", 1)
        rng = np.random.default_rng(0)
        actions = []
        # A command with another stamp does not step the simulation.
        probe.publish("/mile/executed_action", vector_msg(stamp_ns(states[0]) + 1, ACTION_NAMES, np.zeros(4)))
        for k in range(6):
            state = probe.wait_count("/robot/state", k + 1, timeout=20)[k]
            action = rng.uniform(-1, 1, 4)
            actions.append(action)
            probe.publish("/mile/executed_action", vector_msg(stamp_ns(state), ACTION_NAMES, action, "robot"))
        end = probe.wait_count("/episode/end", 1, timeout=20)[0]
        time.sleep(0.3)  # nothing more may come after the end
        states = probe.messages("/robot/state")
        assert len(states) == 7 and end.header.frame_id in ("time_limit", "success")
        assert dict(zip(end.name, end.position))["steps"] == 6
        stamps = [stamp_ns(s) for s in states]
        assert np.all(np.diff(stamps) == 50_000_000)  # 20 Hz simulated time
        clock = [c.clock.sec * 10**9 + c.clock.nanosec for c in probe.messages("/clock")]
        assert clock[-1] == stamps[-1] and clock == sorted(clock)

        # The same episode rendered in a separate process: MuJoCo's EGL renderer (Mesa llvmpipe)
        # loaded here would clash with the LLVM inside triton when a later test imports torch._dynamo.
        np.save(tmp_path / "actions.npy", np.array(actions))
        script = (
            "import numpy as np, sys; from mile_ros.sim import make_env; d = sys.argv[1];"
            f"env = make_env({TASK!r}, seed=5, render=True, image_size=64); obs = [env.reset(5)];"
            "obs += [env.step(a).obs for a in np.load(d + '/actions.npy')];"
            "np.savez(d + '/expected.npz', obs=np.array(obs), image=env.render(), ee=env.ee_position())"
        )
        subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=120)
        expected = np.load(tmp_path / "expected.npz")
        np.testing.assert_allclose([s.position for s in states], expected["obs"], atol=1e-5)
        image = probe.messages("/camera/image_raw")[-1]
        assert (image.height, image.width, image.encoding) == (64, 64, "rgb8")
        pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(64, 64, 3)
        assert np.abs(pixels.astype(int) - expected["image"].astype(int)).mean() < 2.0  # the same, right side up
        ee = probe.messages("/robot/ee_pose")[-1].pose.position
        np.testing.assert_allclose([ee.x, ee.y, ee.z], expected["ee"], atol=1e-6)
        # A lifecycle node: deactivated, no episode starts; activated again, an ended episode stays ended.
        assert probe.lifecycle_state("metaworld_bridge") == "active"  # autostart
        assert probe.transition("metaworld_bridge", "deactivate")
        res = probe.call("/episode/reset", Trigger)
        assert not res.success and "inactive" in res.message
        assert probe.transition("metaworld_bridge", "activate")
        count = len(probe.messages("/robot/state"))
        probe.publish("/mile/executed_action", vector_msg(stamp_ns(states[-1]), ACTION_NAMES, np.zeros(4)))
        time.sleep(0.5)
        assert len(probe.messages("/robot/state")) == count, "an ended episode stepped"
    finally:
        node.stop()
        probe.close()
