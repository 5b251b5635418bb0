"""Humans who hold and who wait, on real Metaworld rollouts: takeover lengths, the wait before
stepping in, and the temporal model's exact prediction of what such a human does next."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from mile_ros.learning import MileCheckpoint, MileConfig, PolicyRunner, Spec, build_model, build_policy
from mile_ros.learning.temporal import StepTerms, TemporalModel, _episode_layout, run_lengths
from mile_ros.sim import SimulatedHuman, episodes_to_dataset, make_env, make_expert, run_episode
from mile_ros.sim.human import check_human_settings, streak_probability

TASK = "drawer-open-v3"


def _net(env, seed: int):
    torch.manual_seed(seed)
    spec = env.spec
    return build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, (32, 32)).eval()


@pytest.fixture(scope="module")
def setting():
    env = make_env(TASK)
    robot = PolicyRunner(MileCheckpoint(env.spec, _net(env, 100)))
    data = run_episode(env, robot, 0).to_dataset(0)
    yield env, robot, data.stacked_observations(), data.observation
    env.close()


def _human(env, stacked, frames, p0: float, sigma: float = 1e4, **kw) -> SimulatedHuman:
    """A human whose per-step check says yes with probability about ``p0`` (nearly the same in
    every state with the default wide probit)."""
    mental = _net(env, 1)
    twin = SimulatedHuman(make_expert(TASK, env), mental, env.spec, cost=1.0, sigma=sigma)
    twin.calibrate(stacked, frames, target_rate=p0)
    return SimulatedHuman(make_expert(TASK, env), mental, env.spec, cost=twin.cost, sigma=sigma, **kw)


def _rollouts(env, robot, human, episodes: int, seed: int = 20):
    return [run_episode(env, robot, seed + i, human=human) for i in range(episodes)]


def test_settings_are_checked():
    check_human_settings(1.0, 1, "eq3", "holding_waiting", 4.0, 0)
    with pytest.raises(ValueError, match="timing must be one of"):
        check_human_settings(1.0, 1, "eq3", "dithering")
    with pytest.raises(ValueError, match="hold_mean"):
        check_human_settings(1.0, 3, "eq3", "holding", 2.0)
    with pytest.raises(ValueError, match="wait_steps"):
        check_human_settings(1.0, 1, "eq3", "waiting", 10.0, -1)
    np.testing.assert_allclose(
        streak_probability(np.array([0.5, 0.5, 0.2, 0.5, 0.5]), np.array([0, 0, 0, 1, 1]), 1),
        [0.0, 0.25, 0.1, 0.0, 0.25],
    )


def test_holding_human_takeover_lengths_follow_the_stated_distribution(setting):
    env, robot, stacked, frames = setting
    human = _human(env, stacked, frames, 0.2, timing="holding", min_takeover_steps=2, hold_mean=6.0, seed=3)
    human.action_mode = "expert"  # the scripted action: the timing is what is tested
    episodes = _rollouts(env, robot, human, 6)  # the expert's takeovers often end an episode early
    lengths = np.array(human.takeover_lengths)
    assert len(lengths) >= 60, len(lengths)
    assert lengths.min() >= 2
    # min 2, then a constant hazard 1 / (6 - 2 + 1): P(L = 2 + k) = 0.8^k 0.2
    h = 1 / 5
    edges = [2, 3, 4, 5, 6, 8, 11]
    expected = [(1 - h) ** (a - 2) - (1 - h) ** (b - 2) for a, b in itertools.pairwise(edges)]
    expected.append((1 - h) ** (edges[-1] - 2))
    counts = [((lengths >= a) & (lengths < b)).sum() for a, b in itertools.pairwise(edges)]
    counts.append((lengths >= edges[-1]).sum())
    assert stats.chisquare(counts, len(lengths) * np.array(expected)).pvalue > 1e-3, counts
    assert lengths.mean() == pytest.approx(6.0, abs=4 * lengths.std() / np.sqrt(len(lengths)))
    # A fixed hold of 6 would not pass the same check.
    assert stats.chisquare(counts, len(lengths) * np.array([0, 0, 0, 0, 1, 0, 0]) + 1e-9).pvalue < 1e-6
    # The record shows the takeovers: runs of intervened steps at least 2 long (unless cut by the end).
    for ep in episodes:
        runs, finished = run_lengths(ep.intervention, np.zeros(ep.length, int))
        assert (runs[finished] >= 2).all()


def test_waiting_human_waits_and_the_robot_can_recover(setting):
    env, robot, stacked, frames = setting
    wait = 1
    human = _human(env, stacked, frames, 0.45, timing="waiting", wait_steps=wait, seed=4)
    human.action_mode = "expert"
    episodes = _rollouts(env, robot, human, 4)
    starts = 0
    for ep in episodes:
        flags = ep.intervention
        on = np.flatnonzero(flags & ~np.r_[False, flags[:-1]])
        starts += len(on)
        assert (on >= wait).all()  # never in the first wait_steps steps: no checks behind it yet
    assert human.recoveries > 0.3 * starts  # concern that lapsed: the robot was given its chance
    # Checks at nearly constant p: starts are completions of runs of wait + 1 yeses, so steps
    # between starts average (1 - p^k) / ((1 - p) p^k), k = wait + 1 (a per-step human: 1 / p).
    p = float(np.mean(np.concatenate([ep.predicted_intervention for ep in episodes])))
    k = wait + 1
    steps = sum(ep.length for ep in episodes)
    expected = steps * (1 - p) * p**k / (1 - p**k)
    assert starts == pytest.approx(expected, rel=0.2), (starts, expected, steps * p)


def _true_model(human: SimulatedHuman, spec: Spec) -> TemporalModel:
    """The temporal model with the human's own wait and hazard (its P(I=1|s) comes from the record)."""
    mile = build_model(spec, MileConfig(hidden=(4,)))
    max_hold = int(human.min_takeover_steps) + 1
    model = TemporalModel(mile, human.wait_steps, max_hold, (2,)).double()
    with torch.no_grad():
        wait = torch.full((human.wait_steps + 1,), -60.0, dtype=torch.float64)
        wait[human.wait_steps] = 0.0
        model.wait_logits.copy_(wait)
        rates = torch.tensor([human.release_probability(d) for d in range(1, max_hold + 1)], dtype=torch.float64)
        model.hold_bias.copy_(torch.logit(rates.clamp(1e-12, 1 - 1e-12)))
    return model


def _predict(model: TemporalModel, episodes) -> tuple[np.ndarray, np.ndarray]:
    data = episodes_to_dataset(episodes)
    recorded = np.concatenate([ep.predicted_intervention for ep in episodes])  # episodes_to_dataset's order
    p = torch.from_numpy(np.clip(recorded, 1e-12, 1 - 1e-12))
    zeros = torch.zeros(len(p), dtype=torch.float64)
    hazard = model.hold_bias.detach().expand(len(p), -1)
    terms = StepTerms(
        p.log(),
        (-p).log1p(),
        p.log(),
        zeros,
        torch.nn.functional.logsigmoid(hazard),
        torch.nn.functional.logsigmoid(-hazard),
    )
    flag = torch.from_numpy(data.intervention)
    index, mask, _ = _episode_layout(data.episode)
    with torch.no_grad():
        _, pred, _ = model.run(terms, flag, index, mask)
    out = np.zeros(len(data))
    out[index.numpy()[mask.numpy()]] = pred.numpy()[mask.numpy()]
    return out, data.intervention


@pytest.mark.parametrize("timing", ["holding_waiting", "waiting"])
def test_temporal_model_predicts_a_holding_waiting_human_exactly(setting, timing):
    """With the human's own P(I=1|s) per step (its record), wait and hazard, the model's one-step
    prediction P(I_t = 1 | past) is calibrated on the human's real rollouts; per-step MILE is not."""
    env, robot, stacked, frames = setting
    human = _human(
        env, stacked, frames, 0.3, sigma=50.0, timing=timing, wait_steps=2, min_takeover_steps=2, hold_mean=5.0, seed=6
    )
    human.action_mode = "expert"
    episodes = _rollouts(env, robot, human, 3)
    p_all = np.concatenate([ep.predicted_intervention for ep in episodes])
    assert p_all.std() > 0.05  # states differ
    pred, flags = _predict(_true_model(human, env.spec), episodes)
    sd = np.sqrt((pred * (1 - pred)).sum())
    assert abs(flags.sum() - pred.sum()) < 4 * sd, (flags.sum(), pred.sum(), sd)
    for lo, hi in [(0.0, 0.1), (0.1, 0.5), (0.5, 1.0)]:  # calibrated within bins too
        sel = (pred >= lo) & (pred < hi)
        if sel.sum() > 30:
            sd_bin = np.sqrt((pred[sel] * (1 - pred[sel])).sum())
            assert abs(flags[sel].sum() - pred[sel].sum()) < 4 * sd_bin + 1, (lo, hi)
    # Per-step MILE's prediction (P(I=1|s) at every step) is far off for this human.
    assert abs(flags.sum() - p_all.sum()) > 6 * np.sqrt((p_all * (1 - p_all)).sum())


def test_expected_intervened_steps_match_the_human_s_own_draws(setting):
    """The calibration's exact recursion against the human's draws on a fixed sequence of check
    probabilities (its private step: the timing alone, the state's P(I=1|s) given)."""
    env, _, stacked, frames = setting
    human = _human(
        env, stacked, frames, 0.3, timing="holding_waiting", wait_steps=2, min_takeover_steps=2, hold_mean=4.0, seed=9
    )
    human.action_mode = "expert"
    p = np.random.default_rng(0).uniform(0.1, 0.9, 25)
    expected = human.expected_intervened(p, np.zeros(len(p), int))
    reps = 3000
    counts = np.zeros(len(p))
    for _ in range(reps):
        human._held = human._streak = 0
        for t, pt in enumerate(p):
            counts[t] += human._decide_timed(None, None, float(pt), frames[0])[0]
    np.testing.assert_allclose(counts / reps, expected, atol=4 * np.sqrt(0.25 / reps))
    assert expected[:2].sum() == 0  # a start needs three yeses
