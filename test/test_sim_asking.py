"""A robot that asks for help in the ROS-free rollout, and the simulated human's answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mile_ros.graph.asking import AskConfig
from mile_ros.learning import MileCheckpoint, PolicyRunner, build_policy
from mile_ros.sim import SimulatedHuman, make_env, make_expert, run_episode

ROBOT = np.array([0.5, 0.5, 0.5, 0.3], dtype=np.float32)


class ScriptedActor:
    """A robot that always proposes ROBOT and predicts P(I=1|s) = ps[t] (cycling)."""

    def __init__(self, ps) -> None:
        self.ps, self.t = list(ps), -1

    def reset(self) -> None:
        self.t = -1

    def act(self, frame):
        self.t += 1
        return ROBOT.copy()

    def intervention_probability(self) -> float:
        return self.ps[self.t % len(self.ps)]


class ExecutedEnv:
    """The environment, keeping every executed action."""

    def __init__(self, env) -> None:
        self.env, self.executed = env, []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, seed):
        self.executed = []
        return self.env.reset(seed)

    def step(self, action):
        self.executed.append(np.array(action, dtype=np.float64))
        return self.env.step(action)


@pytest.fixture(scope="module")
def drawer():
    env = make_env("drawer-open-v3")
    yield ExecutedEnv(env)
    env.close()


def human_for(env, **kw) -> SimulatedHuman:
    torch.manual_seed(1)
    mental = build_policy(env.spec.stacked_dim, 4, False, (32, 32)).eval()
    kw.setdefault("action_mode", "expert")
    return SimulatedHuman(make_expert(env.task, env), mental, env.spec, cost=1e6, sigma=1.0, seed=0, **kw)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    out, t = [], 0
    while t < len(flags):
        if flags[t]:
            s = t
            while t < len(flags) and flags[t]:
                t += 1
            out.append((s, t - s))
        else:
            t += 1
    return out


def test_the_human_answers_each_request_with_a_takeover_of_answer_steps(drawer) -> None:
    env = drawer
    # A human who never steps in on their own (a huge cost) and answers every request for 4 steps.
    human = human_for(env, answer_steps=4)
    ps = [0.1] * 10 + [0.9] * 10
    ask = AskConfig(0.5, timeout_steps=5, cooldown_steps=3)
    ep = run_episode(env, ScriptedActor(ps), seed=3, human=human, ask=ask)
    assert ep.help_requests >= 5
    held = np.flatnonzero(ep.held)
    # Each request holds one step (the human sees it at the next) and is answered by 4 steps.
    assert ep.held_steps == len(held) == ep.help_requests
    assert ep.requests_answered >= ep.help_requests - 1  # the last one may meet the episode's end
    assert ep.requests_timed_out == 0
    starts = runs(ep.intervention)
    assert [s for s, _ in starts] == [h + 1 for h in held][: len(starts)]
    assert all(n == 4 for s, n in starts if s + 4 <= ep.length)
    assert ep.takeovers == len(starts) == human.answers
    assert ep.intervention_count == human.answered_steps
    executed = np.array(env.executed)
    for t in held:  # a hold: no motion, the gripper kept from the step before
        np.testing.assert_allclose(executed[t][:3], 0.0)
        assert executed[t][3] == pytest.approx(executed[t - 1][3])
    expert = make_expert(env.task, env)
    for t in np.flatnonzero(ep.intervention):
        np.testing.assert_allclose(ep.human_action[t], expert.act(ep.observation[t]), atol=1e-6)
    # The record leaves the held steps out, as a bag does; the steps keep their numbers.
    data = ep.to_dataset(0)
    assert len(data) == ep.length - ep.held_steps
    np.testing.assert_array_equal(data.step, np.flatnonzero(~ep.held))


def test_unanswered_requests_time_out_and_the_robot_resumes(drawer) -> None:
    env = drawer
    ask = AskConfig(0.5, timeout_steps=3, cooldown_steps=2)
    ep = run_episode(env, ScriptedActor([0.9]), seed=4, ask=ask)  # nobody at the gamepad
    assert ep.intervention_count == 0 and ep.requests_answered == 0
    assert ep.help_requests == ep.requests_timed_out + int(ep.held[-1])
    # held 3, robot 1 (the timeout step) + 2 (cool-down), held 3, ...
    pattern = np.array([True] * 3 + [False] * 3)
    np.testing.assert_array_equal(ep.held, np.resize(pattern, ep.length))
    executed = np.array(env.executed)
    np.testing.assert_allclose(executed[~ep.held], np.tile(ROBOT, (int((~ep.held).sum()), 1)))


def test_a_watching_human_still_steps_in_on_their_own(drawer) -> None:
    """free_intervention (the default) keeps the human's own takeovers beside the answers."""
    env = drawer
    ask = AskConfig(0.5, timeout_steps=5, cooldown_steps=3)
    free = human_for(env, answer_steps=2)
    states = run_episode(env, ScriptedActor([0.0]), seed=5).to_dataset(0)
    free.calibrate(states.stacked_observations(), states.observation, target_rate=0.1)  # steps in now and then
    ep = run_episode(env, ScriptedActor([0.9] * 5 + [0.1] * 20), seed=5, human=free, ask=ask)
    assert free.answers >= 1 and ep.intervention_count > free.answered_steps


def test_without_a_request_asking_changes_nothing(drawer) -> None:
    env = drawer
    ps = [0.2, 0.4]
    plain = run_episode(env, ScriptedActor(ps), seed=6)
    asked = run_episode(env, ScriptedActor(ps), seed=6, ask=AskConfig(0.5))
    for k in ("observation", "robot_action", "intervention", "step", "reward"):
        np.testing.assert_array_equal(getattr(plain, k), getattr(asked, k))
    assert asked.help_requests == 0 and not asked.held.any()


def test_with_a_policy_checkpoint_the_prediction_comes_from_its_intervention_model(drawer) -> None:
    env = drawer
    spec = env.spec
    torch.manual_seed(0)
    policy = build_policy(spec.stacked_dim, 4, False, (32, 32))
    mental = build_policy(spec.stacked_dim, 4, False, (32, 32))
    with_model = MileCheckpoint(spec, policy, mental, cost=0.0, sigma=1.0)
    runner = PolicyRunner(with_model)
    ep = run_episode(env, runner, seed=7, ask=AskConfig(0.01, timeout_steps=2, cooldown_steps=0))
    assert ep.help_requests > 0  # a random mental model: the predicted probability is far above 0.01
    no_model = PolicyRunner(MileCheckpoint(spec, policy))
    ep = run_episode(env, no_model, seed=7, ask=AskConfig(0.01))
    assert ep.help_requests == 0  # no intervention model, no prediction, no request


def test_bad_asking_setups_are_refused(drawer) -> None:
    class Plain:
        def reset(self) -> None: ...

        def act(self, frame):
            return ROBOT

    with pytest.raises(ValueError, match="intervention_probability"):
        run_episode(drawer, Plain(), seed=0, ask=AskConfig(0.5))
    with make_env("LunarLander-v3") as lander, pytest.raises(ValueError, match="continuous"):
        run_episode(lander, ScriptedActor([0.9]), seed=0, ask=AskConfig(0.5))
    with pytest.raises(ValueError, match="answer_steps"):
        human_for(drawer, answer_steps=0)
