"""The simulated human: intervention rate vs. P(I=1|s), eq.-3 actions, calibration, takeovers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import ndtr

from mile_ros.learning import MileCheckpoint, PolicyRunner, build_policy, gaussian_spread
from mile_ros.sim import SimulatedHuman, fit_mental_model, make_env, make_expert, run_episode
from mile_ros.sim.human import make_simulated_human, start_rate_for_held_rate


def random_net(env, seed: int, hidden=(32, 32)):
    torch.manual_seed(seed)
    spec = env.spec
    return build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, hidden).eval()


def rollout_states(env, seed: int, episodes: int = 1):
    """Stacked observations and frames visited by a random policy."""
    runner = PolicyRunner(MileCheckpoint(env.spec, random_net(env, seed + 100)))
    eps = [run_episode(env, runner, seed + i) for i in range(episodes)]
    data = eps[0].to_dataset(0) if episodes == 1 else None
    if data is None:
        from mile_ros.sim import episodes_to_dataset

        data = episodes_to_dataset(eps)
    return data.stacked_observations(), data.observation


@pytest.fixture(scope="module")
def drawer():
    env = make_env("drawer-open-v3")
    stacked, frames = rollout_states(env, seed=0)
    yield env, stacked, frames
    env.close()


@pytest.fixture(scope="module")
def lander():
    env = make_env("LunarLander-v3")
    stacked, frames = rollout_states(env, seed=0, episodes=3)
    yield env, stacked, frames
    env.close()


def make_human(env, task: str, **kw) -> SimulatedHuman:
    kw.setdefault("cost", 1.0)
    kw.setdefault("sigma", 5.0 if env.spec.discrete else 50.0)
    return SimulatedHuman(make_expert(task, env), random_net(env, 1), env.spec, **kw)


@pytest.mark.parametrize("which", ["drawer", "lander"])
def test_calibration_brings_the_rate_under_the_target(which: str, request) -> None:
    env, stacked, frames = request.getfixturevalue(which)
    human = make_human(env, env.task, cost=0.0)
    before = human.intervention_probability(stacked, frames).mean()
    assert before > 0.3  # uncalibrated, this human would step in too often
    cost = human.calibrate(stacked, frames, target_rate=0.3)
    after = human.intervention_probability(stacked, frames).mean()
    assert human.cost == cost > 0
    assert 0.29 < after <= 0.3
    stricter = human.calibrate(stacked, frames, target_rate=0.1)
    assert stricter > cost and human.intervention_probability(stacked, frames).mean() <= 0.1


@pytest.mark.parametrize("which", ["drawer", "lander"])
def test_empirical_intervention_rate_matches_predicted_probability(which: str, request) -> None:
    env, stacked, frames = request.getfixturevalue(which)
    # A sharp probit makes P(I=1|s) vary a lot between states.
    human = make_human(env, env.task, seed=3, sigma=0.2 if env.spec.discrete else 10.0)
    human.calibrate(stacked, frames, target_rate=0.3)
    idx = np.random.default_rng(0).choice(len(stacked), size=min(400, len(stacked)), replace=False)
    p = human.intervention_probability(stacked[idx], frames[idx])
    assert p.std() > 0.1  # states differ, so a constant-rate human would fail the per-bin check
    repeats = 3
    flags = np.array([[human.decide(stacked[i], frames[i])[0] for i in idx] for _ in range(repeats)])
    assert human.last_probability == pytest.approx(p[-1], rel=1e-5)
    # Overall and within bins of predicted probability, counts agree within 4 standard deviations.
    bins = np.digitize(p, np.quantile(p, [1 / 3, 2 / 3]))
    for b in np.unique(bins):
        sel = bins == b
        expected = repeats * p[sel].sum()
        sd = np.sqrt(repeats * (p[sel] * (1 - p[sel])).sum())
        observed = flags[:, sel].sum()
        assert abs(observed - expected) <= 4 * sd + 1, (b, observed, expected, sd)


def test_eq3_continuous_actions_follow_the_tilted_density(drawer) -> None:
    env, stacked, frames = drawer
    human = make_human(env, env.task, clip_actions=False, seed=5)
    s, f = stacked[200], frames[200]
    (mu, std_h), (m, std_r) = human._model_inputs(s, f)
    spread = float(gaussian_spread(mu, std_h, m, std_r)[0])
    # Choose c and sigma so that Phi((v - c)/sigma) changes a lot over the usual range of q.
    human.cost, human.sigma = spread / 2 - 2.0, 2.0
    draws = np.array([human.draw_action(s, f) for _ in range(1500)])
    q = (((draws - mu.numpy()) / std_h.numpy()) ** 2).sum(1)
    grid = np.linspace(0, 80, 40001)
    density = stats.chi2.pdf(grid, 4) * ndtr((0.5 * (spread - grid) - human.cost) / human.sigma)
    cdf = np.cumsum(density)
    cdf /= cdf[-1]
    assert stats.kstest(q, lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3
    # The test has power: the untilted pi_H (plain chi-square) is rejected.
    assert stats.kstest(q, stats.chi2(4).cdf).pvalue < 1e-6
    # Directions are unaffected by the tilt: the mean offset stays at the expert's mean.
    np.testing.assert_allclose(draws.mean(0), mu.numpy()[0], atol=4 * 0.1 / np.sqrt(1500) * 2)
    assert human.fallback_draws == 0


def test_eq3_discrete_actions_follow_the_tilted_distribution(lander) -> None:
    env, stacked, frames = lander
    human = make_human(env, env.task, cost=0.0, sigma=5.0, seed=2)
    s, f = stacked[40], frames[40]
    log_pi_h, log_pi_r = human._model_inputs(s, f)
    v = (log_pi_h - (log_pi_r.exp() * log_pi_h).sum(-1, keepdim=True))[0].numpy()
    pi_h = np.exp(log_pi_h[0].numpy().astype(np.float64))
    weights = pi_h * ndtr((v.astype(np.float64) - human.cost) / human.sigma)
    n = 4000
    counts = np.bincount([human.draw_action(s, f) for _ in range(n)], minlength=4)
    assert stats.chisquare(counts, n * weights / weights.sum()).pvalue > 1e-3
    assert stats.chisquare(counts, n * pi_h / pi_h.sum()).pvalue < 1e-6


def test_expert_action_mode_and_takeovers_that_persist(drawer) -> None:
    env, stacked, frames = drawer
    expert = make_expert(env.task, env)
    human = SimulatedHuman(
        expert, random_net(env, 1), env.spec, cost=1.0, sigma=50.0, action_mode="expert", min_takeover_steps=4
    )
    human.calibrate(stacked, frames, target_rate=0.1)
    human.reset(seed=0)
    flags = []
    for f in frames:
        intervene, action = human.act(f)
        flags.append(intervene)
        if intervene:
            np.testing.assert_array_equal(action, expert.act(f))
        else:
            assert action is None
    flags = np.array(flags)
    starts = np.flatnonzero(np.diff(np.r_[0, flags.astype(int)]) == 1)
    assert len(starts) >= 3
    for start in starts:
        end = start
        while end < len(flags) and flags[end]:
            end += 1
        assert end - start >= 4 or end == len(flags)
    with pytest.raises(ValueError, match="action_mode"):
        SimulatedHuman(expert, random_net(env, 1), env.spec, cost=1.0, sigma=1.0, action_mode="telepathy")


def test_held_takeovers_are_calibrated_to_the_fraction_of_intervened_steps(drawer) -> None:
    """With takeovers held k steps, the start rate is set so that the *intervened fraction* hits the target."""
    env, stacked, frames = drawer
    assert start_rate_for_held_rate(0.3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="hold"):
        start_rate_for_held_rate(0.3, 0)

    def held_fraction(target: float) -> float:
        # a very wide probit makes P(I=1|s) nearly the same in every state, as the renewal formula assumes
        human = make_human(env, env.task, seed=5, sigma=1e4, min_takeover_steps=10, action_mode="expert")
        human.calibrate(stacked, frames, target_rate=target)
        p = human.intervention_probability(stacked, frames)
        assert p.std() < 0.01
        flags = [human.decide(stacked[i], frames[i])[0] for _ in range(20) for i in range(len(stacked))]
        return float(np.mean(flags))

    assert held_fraction(start_rate_for_held_rate(0.3, 10)) == pytest.approx(0.3, abs=0.05)
    assert held_fraction(0.3) > 0.6  # calibrating the start rate to the target overshoots it


def test_mental_model_clones_the_robot_and_human_oversees_an_episode() -> None:
    task = "LunarLander-v3"
    with make_env(task) as env:
        robot = MileCheckpoint(env.spec, random_net(env, 7, hidden=(16,)))
        fit = fit_mental_model(task, robot, rollouts=6, seed=0)
        robot_actions = PolicyRunner(robot).policy(torch.from_numpy(fit.stacked_obs)).argmax(-1)
        mental_actions = fit.net(torch.from_numpy(fit.stacked_obs)).argmax(-1)
        accuracy = float((robot_actions == mental_actions).float().mean())
        majority = np.bincount(robot_actions.numpy(), minlength=4).max() / len(robot_actions)
        assert accuracy > max(0.6, majority + 0.1), (accuracy, majority)
        assert len(fit.frames) == len(fit.stacked_obs) and fit.rollouts == 6
        assert np.isfinite(fit.heldout_nll)  # the belief's error on held-out rollouts is reported

        human, fit2 = make_simulated_human(task, robot, env, rollouts=6, target_rate=0.3, oversight_episodes=0)
        assert human.intervention_probability(fit2.stacked_obs, fit2.frames).mean() <= 0.3
        # The second pass recalibrates on the states seen while overseeing, so the cost moves.
        overseer, _ = make_simulated_human(task, robot, env, rollouts=6, target_rate=0.3, oversight_episodes=4)
        assert overseer.cost != human.cost
        ep = run_episode(env, PolicyRunner(robot), seed=11, human=overseer)
    assert ep.intervention_count == int(ep.intervention.sum()) > 0
    assert np.isfinite(ep.predicted_intervention).all()
    assert (ep.human_action[~ep.intervention] == -1).all()
    assert ((ep.human_action[ep.intervention] >= 0) & (ep.human_action[ep.intervention] < 4)).all()
    ep.to_dataset(0)  # valid rows


def test_authors_action_mode_shrinks_the_expert_by_the_probability_of_intervening(drawer, lander) -> None:
    """The authors' simulated human acts from N(p mu_E, (p sigma_E)^2), p = P(I=1|s) (docs/mile-model.md)."""
    env, stacked, frames = drawer
    expert = make_expert(env.task, env)
    human = SimulatedHuman(
        expert, random_net(env, 1), env.spec, cost=1.0, sigma=50.0, action_mode="authors", clip_actions=False, seed=3
    )
    human.calibrate(stacked, frames, target_rate=0.4)
    i = int(np.argmin(np.abs(human.intervention_probability(stacked, frames) - 0.4)))
    p = float(human.intervention_probability(stacked[i : i + 1], frames[i : i + 1])[0])
    assert 0.1 < p < 0.9
    mu, std = expert.distribution(frames[i])
    draws = np.stack([human.draw_action(stacked[i], frames[i]) for _ in range(3000)])
    np.testing.assert_allclose(draws.mean(0), p * mu, atol=4 * p * std.max() / np.sqrt(3000) + 1e-6)
    np.testing.assert_allclose(draws.std(0), p * std, rtol=0.1)
    # in an episode the drawn action uses the probability of that very step
    human.reset(seed=0)
    for f in frames[:50]:
        intervene, action = human.act(f)
        if intervene:
            assert np.all(np.abs(action - human.last_probability * expert.distribution(f)[0]) < 6 * std.max())
    lander_env = lander[0]
    with pytest.raises(ValueError, match="continuous actions"):
        make_human(lander_env, lander_env.task, action_mode="authors")


def test_auto_probit_scale_is_a_fraction_of_the_spread_of_value_gaps(drawer) -> None:
    from mile_ros.sim import MentalModelFit
    from mile_ros.sim.human import auto_sigma, state_value_gaps

    env, stacked, frames = drawer
    expert = make_expert(env.task, env)
    fit = MentalModelFit(random_net(env, 1), stacked.astype(np.float32), frames, 0.0, 1, 0.0)
    gaps = state_value_gaps(expert, fit)
    assert gaps.shape == (len(frames),) and gaps.std() > 0
    assert auto_sigma(expert, fit, 0.25) == pytest.approx(0.25 * gaps.std())
    # the value gap is the mean of v(s, a) over a ~ pi_H: check one state against sampling
    mu, std = expert.distribution(frames[0])
    with torch.no_grad():
        m, s = fit.net(torch.from_numpy(stacked[:1].astype(np.float32)))
    spread = float(gaussian_spread(torch.tensor(mu)[None], torch.tensor(std)[None], m, s)[0])
    q = np.random.default_rng(0).chisquare(len(mu), 200_000)
    assert gaps[0] == pytest.approx(np.mean(0.5 * (spread - q)), rel=0.02, abs=0.05)
    from mile_ros.sim.presets import load_preset

    preset = load_preset(env.task)
    assert preset["sigma"] == "auto"
    human = SimulatedHuman.from_preset(env.task, env, fit)
    assert human.sigma == pytest.approx(auto_sigma(expert, fit, float(preset["sigma_scale"])))
    with pytest.raises(ValueError, match="needs the mental model's fit"):
        SimulatedHuman.from_preset(env.task, env, fit.net)
    with pytest.raises(ValueError, match="sigma_scale"):
        auto_sigma(expert, fit, 0.0)


def test_a_tracking_belief_is_fit_on_the_evaluation_episodes_of_the_robot() -> None:
    """The benchmark's default human revises its belief on each evaluation's episodes (cells.py)."""
    from mile_ros.sim import evaluate
    from mile_ros.sim.human import fit_belief

    task = "LunarLander-v3"
    with make_env(task) as env:
        robot = MileCheckpoint(env.spec, random_net(env, 8, hidden=(16,)))
    result = evaluate(task, robot, 4, seed=0, workers=1, keep_episodes=True)
    episodes = result.extra["episodes"]
    assert [ep.success for ep in episodes] == result.successes and [ep.length for ep in episodes] == result.lengths
    belief = fit_belief(task, episodes, robot, seed=0)
    obs = torch.from_numpy(belief.stacked_obs)
    agree = (belief.net(obs).argmax(-1) == robot.policy(obs).argmax(-1)).float().mean()
    assert float(agree) > 0.8 and belief.rollouts == 4
    with pytest.raises(ValueError, match="one worker"):
        evaluate(task, robot, 4, seed=0, workers=2, keep_episodes=True)
