"""simulated_human as a process: a Joy per observation, stamped with it, readable through the mapping."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from std_srvs.srv import SetBool, Trigger

from mile_ros.graph.joy_mapping import load_joy_mapping
from mile_ros.learning import MileCheckpoint, build_policy
from mile_ros.nodes.common import stamp_ns, vector_msg
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier


def test_simulated_human_answers_each_observation_on_the_gamepad(tmp_path):
    from mile_ros.sim import make_env

    env = make_env("drawer-open-v3", seed=0)
    spec = env.spec
    ckpt = tmp_path / "robot.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (32, 32))).save(ckpt)
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess(
        "simulated_human",
        domain,
        {"checkpoint": str(ckpt), "mental_rollouts": 1, "joy_mapping": "sdl", "target_intervention_rate": 0.5},
        tmp_path,
    )
    mapping = load_joy_mapping("sdl")
    try:
        probe.listen("/teleop/joy")
        probe.wait_matched("/mile/observation")
        # The mental model is fit in the background: reset says when the human is ready.
        for _ in range(240):
            if probe.call("/simulated_human/reset", Trigger, timeout=30).success:
                break
            with probe.cond:
                probe.cond.wait(0.5)
        else:
            pytest.fail("the simulated human never became ready")
        frame = env.reset(0)
        rng = np.random.default_rng(0)
        for i in range(30):
            stamp = (i + 1) * 50_000_000
            probe.publish("/mile/observation", vector_msg(stamp, [f"obs_{k:02d}" for k in range(39)], frame))
            probe.wait_count("/teleop/joy", i + 1, timeout=20)
            frame = env.step(rng.uniform(-1, 1, 4)).obs
        joys = probe.messages("/teleop/joy")
        assert [stamp_ns(j) for j in joys] == [(i + 1) * 50_000_000 for i in range(30)]
        for j in joys:
            assert len(j.axes) == mapping.axes_count and len(j.buttons) == mapping.buttons_count
            action = mapping.action(j.axes)
            assert np.all(np.abs(action) <= 1.0)
            if not mapping.pressed(j.buttons, "takeover"):
                np.testing.assert_allclose(action, 0.0)  # hands off the sticks when not intervening
        assert probe.call("/simulated_human/enable", SetBool, SetBool.Request(data=False)).success
        for i in range(30, 40):
            probe.publish("/mile/observation", vector_msg((i + 1) * 50_000_000, [f"o{k}" for k in range(39)], frame))
        joys = probe.wait_count("/teleop/joy", 40, timeout=20)[30:]
        assert not any(mapping.pressed(j.buttons, "takeover") for j in joys)
    finally:
        node.stop()
        probe.close()
        env.close()


def test_simulated_human_answers_a_help_request(tmp_path):
    """A human who steps in only when asked takes over for answer_steps observations after
    mile/help_request turns true, and keeps hands off otherwise."""
    from std_msgs.msg import Bool

    from mile_ros.sim import make_env

    env = make_env("drawer-open-v3", seed=0)
    spec = env.spec
    ckpt = tmp_path / "robot.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (32, 32))).save(ckpt)
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess(
        "simulated_human",
        domain,
        {
            "checkpoint": str(ckpt),
            "mental_rollouts": 1,
            "joy_mapping": "ps3",
            "answer_steps": 3,
            "free_intervention": False,
        },
        tmp_path,
    )
    mapping = load_joy_mapping("ps3")
    try:
        probe.listen("/teleop/joy")
        probe.wait_matched("/mile/observation")
        probe.wait_matched("/mile/help_request")
        for _ in range(240):
            if probe.call("/simulated_human/reset", Trigger, timeout=30).success:
                break
            with probe.cond:
                probe.cond.wait(0.5)
        else:
            pytest.fail("the simulated human never became ready")
        frame = env.reset(0)
        pressed = []
        for i in range(12):
            if i == 4:
                probe.publish("/mile/help_request", Bool(data=True))
            if i == 5:
                probe.publish("/mile/help_request", Bool(data=False))  # the takeover closed the request
            time.sleep(0.1)  # the request is in before the next observation
            stamp = (i + 1) * 50_000_000
            probe.publish("/mile/observation", vector_msg(stamp, [f"obs_{k:02d}" for k in range(39)], frame))
            joy = probe.wait_count("/teleop/joy", i + 1, timeout=20)[-1]
            assert stamp_ns(joy) == stamp
            pressed.append(mapping.pressed(joy.buttons, "takeover"))
            if pressed[-1]:
                assert np.abs(mapping.action(joy.axes)).max() > 0  # drives as the expert does
            frame = env.step(np.zeros(4)).obs
        assert pressed == [False] * 4 + [True] * 3 + [False] * 5, node.output()[-2000:]
    finally:
        node.stop()
        probe.close()
        env.close()
