"""The baselines' shared interface and each method's defining rule, on small hand-built records."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mile_ros.baselines import (
    METHODS,
    check_selection,
    config_type,
    gets_demos,
    merge_demos,
    method_config,
    parse_options,
    resolve_config,
    train,
)
from mile_ros.baselines.bc_intervention import intervention_probability
from mile_ros.baselines.iwr import count_balanced_weights
from mile_ros.baselines.rlif import intervention_transitions
from mile_ros.baselines.sirius import INTERVENTION, PRE_INTERVENTION, ROBOT, SiriusConfig, action_modes
from mile_ros.learning import (
    InterventionDataset,
    MileCheckpoint,
    MileConfig,
    RolloutSelection,
    Spec,
    build_policy,
    load_checkpoint,
)

OBS, ACT = 3, 2


def make_record(discrete: bool, episodes: int = 4, steps: int = 40, seed: int = 0) -> InterventionDataset:
    """States in [-1, 1]^3; the human takes over where x0 > 0.3 and then pushes a fixed action."""
    rng = np.random.default_rng(seed)
    spec = Spec(OBS, 3 if discrete else ACT, discrete, frame_stack=1)
    obs = rng.uniform(-1, 1, (episodes * steps, OBS)).astype(np.float32)
    flag = obs[:, 0] > 0.3
    if discrete:
        robot = np.zeros(len(obs), np.int64)
        human = np.where(flag, 2, -1)
    else:
        robot = np.tile(np.array([-0.5, 0.0], np.float32), (len(obs), 1))
        human = np.where(flag[:, None], np.array([0.8, -0.6], np.float32), np.nan)
    episode = np.repeat(np.arange(episodes), steps)
    step = np.tile(np.arange(steps), episodes)
    return InterventionDataset(spec, obs, robot, flag, human, episode, step)


def make_init(spec: Spec, data: InterventionDataset, seed: int = 0) -> MileCheckpoint:
    torch.manual_seed(seed)
    policy = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, (32, 32))
    policy.normalizer.fit(data.stacked_observations())
    return MileCheckpoint(spec, policy)


def fast_config(method: str, discrete: bool):
    if method == "rlif":
        return method_config("rlif", "LunarLander-v3" if discrete else "drawer-open-v3", actor_updates=60, n_critics=4)
    if method == "mile":
        return method_config("mile", "drawer-open-v3", epochs=150, lr=3e-3, cost=0.5, sigma=1.0, patience=None)
    return method_config(method, "drawer-open-v3", epochs=150, lr=3e-3, patience=None)


@pytest.mark.slow
@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_starts_from_a_clone_and_learns_the_human_action(method, discrete, tmp_path):
    data = make_record(discrete)
    init = make_init(data.spec, data)
    before = {k: v.clone() for k, v in init.policy.state_dict().items()}
    ckpt = train(method, data, init, fast_config(method, discrete))
    for k, v in init.policy.state_dict().items():  # the common initial policy is never modified
        assert torch.equal(v, before[k]), f"{method} changed the initial policy's {k}"
    assert ckpt.meta["method"] == method
    assert ckpt.policy is not init.policy
    loaded = load_checkpoint(ckpt.save(tmp_path / f"{method}.pt"), expected=data.spec)
    takeover = torch.from_numpy(data.stacked_observations()[data.intervention])
    with torch.no_grad():
        if discrete:
            p_before = init.policy(takeover).exp()[:, 2].mean()
            p_after = loaded.policy(takeover).exp()[:, 2].mean()
            assert p_after > p_before, f"{method}: P(human action) did not rise ({p_before:.3f} -> {p_after:.3f})"
        elif method != "rlif":  # RL has no target action; see the RLIF tests
            target = torch.tensor([0.8, -0.6])
            err_before = (init.policy(takeover)[0] - target).norm(dim=-1).mean()
            err_after = (loaded.policy(takeover)[0] - target).norm(dim=-1).mean()
            assert err_after < 0.7 * err_before, f"{method}: {err_before:.3f} -> {err_after:.3f}"


def test_unknown_method_and_setting_are_refused():
    data = make_record(False)
    init = make_init(data.spec, data)
    with pytest.raises(ValueError, match="unknown method"):
        train("dagger", data, init)
    with pytest.raises(ValueError, match="unknown setting"):
        method_config("iwr", "drawer-open-v3", epochz=3)
    with pytest.raises(ValueError, match="no variant 'paper'"):
        method_config("iwr", variant="paper")
    with pytest.raises(TypeError, match="IWRConfig"):
        train("iwr", data, init, method_config("sirius"))
    with pytest.raises(ValueError, match="not key=value"):
        parse_options("paper,paper")
    with pytest.raises(ValueError, match="not key=value"):
        parse_options("authors")
    other = MileCheckpoint(Spec(OBS + 1, ACT, frame_stack=1), build_policy((OBS + 1) * 2, ACT, False, (8,)))
    with pytest.raises(ValueError, match="obs_dim"):
        train("hg_dagger", data, other)


def test_each_method_registers_one_config_whose_defaults_are_the_projects_choice():
    """No task: the config's own defaults, which are the project's for iterative Metaworld training;
    ``fit_mile``'s config alone is the chosen MILE, and the paper's stays one call away."""
    for method in METHODS:
        assert method_config(method) == config_type(method)()
        assert method_config(method, "drawer-open-v3") == config_type(method)()  # its preset adds nothing
    chosen = MileConfig()
    assert (chosen.policy_std, chosen.std_step, chosen.lambda_mental) == ("shared", "network", 1.0)
    assert chosen.cost_from_rate and chosen.learn_cost and chosen.learn_sigma and not chosen.select_best
    assert (chosen.lr, chosen.epochs, chosen.cost, chosen.sigma) == (1e-4, 300, 5.0, 5.0)
    paper = MileConfig.paper()
    assert (paper.policy_std, paper.lambda_mental, paper.cost, paper.sigma) == ("state", 0.0, 60.0, 75.0)
    assert not (paper.cost_from_rate or paper.learn_cost or paper.learn_sigma)
    assert method_config("mile", variant="paper") == paper
    assert parse_options("paper,lr=1e-4,learn_cost=true") == {"variant": "paper", "lr": 1e-4, "learn_cost": True}


def test_resolve_config_layers_preset_options_and_settings_over_method_config():
    """One resolution for every caller: the experiment preset's values under the options text, the
    caller's own settings on top, and a setting the method does not have refused by name."""
    task = "peg-insert-side-v3"
    got = resolve_config("mile", "paper,lr=1e-3,epochs=5", task, False, {"lr": 1.0, "sigma": 3.0}, {"epochs": 7})
    assert got == method_config("mile", task, False, "paper", lr=1e-3, sigma=3.0, epochs=7)
    assert resolve_config("iwr", {"epochs": 2}, task) == method_config("iwr", task, epochs=2)
    assert resolve_config("rlif") == method_config("rlif")
    with pytest.raises(ValueError, match="cost: not a setting of iwr"):
        resolve_config("iwr", settings={"cost": 1.0})
    with pytest.raises(ValueError, match="unknown setting"):
        resolve_config("iwr", "epochz=3")
    with pytest.raises(ValueError, match="unknown method"):
        resolve_config("dagger")


def test_what_the_benchmark_gives_each_method_is_the_methods_own_declaration():
    assert {m for m in METHODS if not gets_demos(m)} == {"mile", "mile_temporal"}  # the ablation runs MILE without
    for method in METHODS:
        if method == "rlif":
            with pytest.raises(ValueError, match="RLIF trains by updates"):
                check_selection(method)
        else:
            check_selection(method)


def test_per_task_settings_come_from_the_task_presets():
    assert method_config("mile", "drawer-open-v3", iterative=False).lr == 5e-4  # the paper's single round
    assert method_config("mile", "drawer-open-v3").lr == 1e-4  # the authors' iterative rate
    assert method_config("mile", "LunarLander-v3").lr == 1e-3  # not the paper's (docs/results.md)
    assert method_config("mile", "peg-insert-side-v3").lr == 5e-6  # not the paper's (docs/results.md)
    assert method_config("mile", "peg-insert-side-v3", iterative=False).lr == 1e-4
    assert method_config("iwr", "LunarLander-v3", iterative=False).epochs == 200
    peg = method_config("mile", "peg-insert-side-v3")
    assert (peg.cost, peg.sigma, peg.lambda_mental) == (5.0, 5.0, 1.0)
    paper_peg = method_config("mile", "peg-insert-side-v3", variant="paper")
    assert (paper_peg.cost, paper_peg.sigma, paper_peg.lr, paper_peg.policy_std) == (75.0, 175.0, 5e-6, "state")
    assert method_config("iwr", "peg-insert-side-v3").lr == 1e-6
    assert method_config("hg_dagger", "drawer-open-v3").epochs == 300
    assert method_config("hg_dagger", "drawer-open-v3", iterative=False).epochs == 1000
    assert method_config("hg_dagger", "button-press-v3").epochs == 1000
    assert method_config("rlif", "LunarLander-v3").batch_size == 64
    assert method_config("mile", "LunarLander-v3").hidden == (64, 64)  # a YAML list becomes the field's tuple
    assert method_config("mile", "push-v3", iterative=False) == method_config("mile", "drawer-open-v3", iterative=False)


def test_a_task_presets_unknown_training_setting_is_refused(tmp_path, monkeypatch):
    from mile_ros.sim import presets

    (tmp_path / "default.yaml").write_text("training:\n  iwr: {lr: 1.0e-3}\n")
    (tmp_path / "typo-v3.yaml").write_text("training:\n  iwr: {epochz: 3}\n")
    (tmp_path / "nomethod-v3.yaml").write_text("training:\n  dagger: {lr: 1.0}\n")
    monkeypatch.setenv("MILE_ROS_SIM_PRESETS", str(tmp_path))
    presets._read.cache_clear()
    try:
        assert method_config("iwr", "reach-v3").lr == 1e-3
        with pytest.raises(ValueError, match=r"unknown setting.*training.iwr of typo-v3's preset.*epochz"):
            method_config("iwr", "typo-v3")
        with pytest.raises(ValueError, match="unknown method"):
            method_config("iwr", "nomethod-v3")
    finally:
        presets._read.cache_clear()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "rlif"])
def test_rollout_selection_is_an_argument_of_the_one_training_function(method):
    """``selection`` picks the best-scoring weights; a call without it is untouched by an earlier one."""
    data = make_record(False)
    init = make_init(data.spec, data)
    config = method_config(method, "drawer-open-v3", epochs=4, lr=3e-3, batch_size=64)
    scores = iter([0.0, 2.0, 1.0, 1.0])  # candidates before training and at epochs 1, 3 and the end (3)
    kept = {}

    def score(modules) -> float:
        kept[len(kept)] = {k: v.clone() for k, v in modules[0].state_dict().items()}
        return next(scores)

    picked = train(method, data, init, config, selection=RolloutSelection(score, every=2))
    assert picked.meta["best_epoch"] == 1
    plain = train(method, data, init, config)
    assert plain.meta["best_epoch"] == 3
    policy_keys = picked.policy.state_dict().keys()
    # MILE's candidates are its model (policy and mental model): compare the policy's part
    prefix = "policy." if method == "mile" else ""
    epoch1 = {k: kept[1][prefix + k] for k in policy_keys}
    for k, v in picked.policy.state_dict().items():
        torch.testing.assert_close(v, epoch1[k], rtol=0, atol=0)
    assert any(not torch.equal(v, epoch1[k]) for k, v in plain.policy.state_dict().items())
    with pytest.raises(ValueError, match="RLIF"):
        train("rlif", data, init, method_config("rlif", actor_updates=2), selection=RolloutSelection(score))
    with pytest.raises(ValueError, match="every >= 1"):
        RolloutSelection(score, every=0)


def test_iwr_weights_balance_interventions_and_robot_steps_by_count():
    flag = np.array([1, 0, 0, 0, 0, 0, 0, 1, 0, 0], bool)
    w = count_balanced_weights(flag)
    assert w[flag].sum() == pytest.approx(w[~flag].sum())
    assert w.sum() == pytest.approx(len(flag))
    assert np.all(count_balanced_weights(np.zeros(5, bool)) == 1)


def test_sirius_modes_mark_the_window_before_each_takeover_within_its_episode():
    flag = np.array([0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0], bool)
    n = len(flag)
    spec = Spec(1, 1, frame_stack=0)
    data = InterventionDataset(
        spec,
        np.zeros((n, 1)),
        np.zeros((n, 1)),
        flag,
        np.where(flag[:, None], 1.0, np.nan),
        np.r_[np.zeros(10), np.ones(5)],
        np.r_[np.arange(10), np.arange(5)],
    )
    mode = action_modes(data, window=2)
    expected = [
        ROBOT,
        ROBOT,
        PRE_INTERVENTION,
        PRE_INTERVENTION,
        INTERVENTION,
        INTERVENTION,
        PRE_INTERVENTION,
    ]
    expected += [PRE_INTERVENTION, INTERVENTION, ROBOT, INTERVENTION, ROBOT, ROBOT, ROBOT, ROBOT]
    assert mode.tolist() == expected
    from mile_ros.baselines.sirius import sirius_weights

    w = sirius_weights(mode, SiriusConfig(intervention_share=0.5))
    assert np.all(w[mode == PRE_INTERVENTION] == 0)
    assert w[mode == INTERVENTION].sum() == pytest.approx(w[mode == ROBOT].sum())


def test_rlif_rewards_only_the_takeover_and_chains_next_observations():
    data = make_record(False, episodes=2, steps=6, seed=3)
    t = intervention_transitions(data)
    n = len(data)
    flag, ep = data.intervention, data.episode
    starts = flag & (np.r_[True, ep[1:] != ep[:-1]] | ~np.r_[False, flag[:-1]])
    assert (t.reward[:n] == 0).all()
    assert (t.reward[n:] == -1).all() and len(t.reward) - n == starts.sum()
    obs = data.stacked_observations()
    np.testing.assert_array_equal(t.obs[n:], obs[starts])
    np.testing.assert_array_equal(t.action[n:], data.robot_action[starts])  # the overridden proposal
    assert t.done[n:].all()
    last = np.r_[ep[1:] != ep[:-1], True]
    assert t.done[:n].tolist() == last.tolist()
    np.testing.assert_array_equal(t.next_obs[:n][~last], obs[1:][~last[:-1]])


def test_rlif_dqn_learns_to_avoid_the_overridden_action():
    data = make_record(True, episodes=6, steps=40)
    init = make_init(data.spec, data)
    ckpt = train("rlif", data, init, method_config("rlif", "LunarLander-v3", actor_updates=150))
    takeover = torch.from_numpy(data.stacked_observations()[data.intervention])
    with torch.no_grad():
        p = ckpt.policy(takeover).exp()
    # action 0 (the robot's, overridden at every takeover) must become the least likely there
    assert (p[:, 0] < p[:, 1:].min(-1).values).float().mean() > 0.8


def test_demos_enter_as_interventions_and_bc_intervention_classifier_predicts_takeovers(tmp_path):
    data = make_record(False)
    demos = make_record(False, episodes=2, seed=9)
    demos.human_action[:] = np.nan  # an expert rollout: its actions are the "robot" actions
    demos.intervention[:] = False
    merged = merge_demos(data, demos)
    assert len(merged) == len(data) + len(demos)
    extra = merged.select(np.isin(merged.episode, demos.episode + 1_000_000))
    assert extra.intervention.all()
    np.testing.assert_array_equal(extra.human_action, demos.robot_action)
    init = make_init(data.spec, data)
    ckpt = train("bc_intervention", data, init, fast_config("bc_intervention", False))
    loaded = load_checkpoint(ckpt.save(tmp_path / "bci.pt"))
    p = intervention_probability(loaded, data.stacked_observations())
    auc_pairs = p[data.intervention][:, None] > p[~data.intervention][None, :]
    assert auc_pairs.mean() > 0.9
    with pytest.raises(ValueError, match="no intervention classifier"):
        intervention_probability(init, data.stacked_observations())


def make_prior(spec: Spec, rows: int = 200, seed: int = 1) -> InterventionDataset:
    """The initial policy's demonstrations: the demonstrator pushes (0.2, 0.9) where x0 < 0 (robot actions)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 0, (rows, spec.obs_dim)).astype(np.float32)
    act = np.tile(np.array([0.2, 0.9], np.float32), (rows, 1))
    flag = np.zeros(rows, bool)
    return InterventionDataset(spec, obs, act, flag, np.full_like(act, np.nan), np.zeros(rows, int), np.arange(rows))


@pytest.mark.parametrize("method", ["mile", "bc_intervention", "hg_dagger", "iwr", "sirius"])
def test_the_prior_joins_every_imitation_learner_and_lambda_prior_zero_drops_it(method):
    data = make_record(False)
    prior = make_prior(data.spec)
    init = make_init(data.spec, data)
    states = torch.from_numpy(prior.stacked_observations())
    target = torch.tensor([0.2, 0.9])

    def error(ckpt) -> float:
        with torch.no_grad():
            return float((ckpt.policy(states)[0] - target).norm(dim=-1).mean())

    with_prior = train(method, data, init, fast_config(method, False), prior=prior)
    no_prior = dataclasses.replace(fast_config(method, False), lambda_prior=0.0)
    without = train(method, data, init, no_prior, prior=prior)
    assert with_prior.meta["prior_rows"] == len(prior) and without.meta["prior_rows"] == 0
    assert error(with_prior) < 0.5 * error(without), f"{method}: {error(with_prior):.3f} vs {error(without):.3f}"


def test_rlif_takes_no_prior():
    data = make_record(False)
    ckpt = train("rlif", data, make_init(data.spec, data), fast_config("rlif", False), prior=make_prior(data.spec))
    assert ckpt.meta["prior_rows"] == 0


def test_a_prior_of_another_shape_is_refused():
    data = make_record(False)
    other = make_prior(Spec(OBS + 1, ACT, False, frame_stack=1))
    with pytest.raises(ValueError, match="prior does not fit"):
        train("hg_dagger", data, make_init(data.spec, data), fast_config("hg_dagger", False), prior=other)
