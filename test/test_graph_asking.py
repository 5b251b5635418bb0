"""The help-request rule (mile_ros.graph.asking) and the arbitration's hold while a request is open."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mile_ros.graph.arbitration import Arbiter, ArbitrationConfig, hold_action
from mile_ros.graph.asking import AskConfig, HelpRequester
from mile_ros.graph.joy_mapping import load_joy_mapping


def run(requester: HelpRequester, ps, humans) -> list[tuple[bool, str]]:
    out = []
    for p, h in zip(ps, humans):
        s = requester.step(p, h)
        out.append((s.asking, s.event))
    return out


def test_asks_above_the_threshold_and_a_takeover_answers() -> None:
    r = HelpRequester(AskConfig(0.5, timeout_steps=5, cooldown_steps=2))
    steps = run(r, [0.2, 0.5, 0.6, 0.9, 0.9], [False, False, False, False, True])
    # 0.5 is not above 0.5; 0.6 opens; held while unanswered; the takeover closes it.
    assert steps == [(False, ""), (False, ""), (True, "start"), (True, ""), (False, "answered")]
    assert (r.requests, r.answered, r.timed_out, r.held_steps) == (1, 1, 0, 2)


def test_an_unanswered_request_times_out_and_the_robot_resumes() -> None:
    r = HelpRequester(AskConfig(0.5, timeout_steps=3, cooldown_steps=0))
    steps = run(r, [0.9] * 5, [False] * 5)
    assert steps == [(True, "start"), (True, ""), (True, ""), (False, "timeout"), (True, "start")]
    assert r.timed_out == 1 and r.requests == 2 and r.held_steps == 4


def test_cooldown_counts_only_the_robots_own_steps() -> None:
    r = HelpRequester(AskConfig(0.5, timeout_steps=10, cooldown_steps=2))
    humans = [False, True, True, True, False, False, False]
    steps = run(r, [0.9] * 7, humans)
    assert [e for _, e in steps] == ["start", "answered", "", "", "", "", "start"]
    # The human's driving (steps 2-3) does not use up the cool-down: two robot steps (4, 5) do.
    assert [a for a, _ in steps] == [True, False, False, False, False, False, True]


def test_no_prediction_never_asks_and_reset_closes_a_request() -> None:
    r = HelpRequester(AskConfig(0.1))
    assert run(r, [None, math.nan, 0.05], [False] * 3) == [(False, "")] * 3
    assert r.step(0.9, True).asking is False  # the human already drives: nothing to ask
    assert r.step(0.9, False).event == "start"
    r.reset()
    assert not r.asking and r.requests == 1  # counts kept across episodes
    r.reset_counts()
    assert r.requests == 0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": 0.5, "timeout_steps": 0}, "ask_timeout_steps"),
        ({"threshold": 0.5, "timeout_steps": 2.5}, "ask_timeout_steps"),
        ({"threshold": 0.5, "cooldown_steps": -1}, "ask_cooldown_steps"),
    ],
)
def test_bad_settings_are_refused(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        AskConfig(**kw)


def test_arbiter_holds_while_asked_unless_the_human_drives() -> None:
    mapping = load_joy_mapping("ps3")
    arb = Arbiter(mapping, ArbitrationConfig(max_jump=2.0))
    arb.on_proposal(1, np.array([0.3, 0.3, 0.3, 0.8]), now=0.0)
    assert arb.command(0.0).source == "robot"
    held = arb.command(0.01, hold=True)
    assert held.source == "hold" and not held.intervention
    np.testing.assert_allclose(held.action, [0, 0, 0, 0.8])  # no motion, the grasp kept
    np.testing.assert_allclose(held.robot_action, [0.3, 0.3, 0.3, 0.8])  # the proposal it did not run
    human = np.array([-0.5, 0.0, 0.5, -1.0])
    axes, buttons = mapping.encode(human, ["takeover"])
    arb.on_joy(2, axes, buttons, now=0.02)
    assert arb.human_active(0.02)
    cmd = arb.command(0.02, hold=True)
    assert cmd.source == "human"
    np.testing.assert_allclose(cmd.human_action, human, atol=1e-6)


def test_hold_action_keeps_only_the_gripper() -> None:
    np.testing.assert_allclose(hold_action(np.array([0.5, -0.5, 1.0, -0.7]), 3), [0, 0, 0, -0.7])
    np.testing.assert_allclose(hold_action(np.array([0.5, -0.5]), 3), [0, 0])
