"""The MILE trainer: reproducibility, model selection, checkpoints, cost calibration."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from mile_ros.learning import (
    CheckpointError,
    MileCheckpoint,
    MileConfig,
    PolicyRunner,
    RolloutSelection,
    Spec,
    calibrate_cost,
    fit_mile,
    load_checkpoint,
)
from mile_ros.learning.synthetic import make_ground_truth, sample_record

# Small and fast; the mechanics tests train the paper's MILE (a std per state, c and sigma fixed).
QUICK = dict(hidden=(32, 32), lr=1e-3, batch_size=256, epochs=6, cost=1.0, sigma=1.0, patience=None, val_fraction=0.2)


@pytest.fixture(scope="module")
def record():
    truth = make_ground_truth(Spec(6, 2, False, frame_stack=0), cost=1.0, seed=0)
    return sample_record(truth, episodes=6, steps=200, seed=1)


def test_same_seed_same_model(record):
    a = fit_mile(record, MileConfig.paper(**QUICK, seed=4))
    b = fit_mile(record, MileConfig.paper(**QUICK, seed=4))
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    c = fit_mile(record, MileConfig.paper(**QUICK, seed=5))
    assert not torch.equal(a.model.policy.mean_head.weight, c.model.policy.mean_head.weight)


def test_fit_mile_alone_trains_the_chosen_mile(record):
    """No config: the project's MILE (shared std, c from the record's rate, c and sigma fitted, the
    anchor on), never the paper's constants."""
    few = record.select(np.flatnonzero(record.episode == 0)[:64])
    result = fit_mile(few)
    assert result.config == MileConfig() and len(result.loop.history) == MileConfig().epochs
    assert result.model.policy.std_mode == "shared" and result.model.mental.std_mode == "shared"
    assert result.model.cost_value() != pytest.approx(MileConfig().cost)  # started from the rate, then fitted
    assert result.checkpoint().meta["config"]["lambda_mental"] == 1.0


def test_default_keeps_last_epoch_and_records_held_out_loss(record):
    cfg = MileConfig.paper(**{**QUICK, "epochs": 5}, seed=0)
    result = fit_mile(record, cfg)
    assert len(result.loop.history) == 5 and result.loop.best_epoch == 4
    assert all(np.isfinite(row["val_loss"]) for row in result.loop.history)
    # the weights in hand are the last epoch's: the model scores exactly that epoch's held-out loss
    _, val = record.split_by_episode(cfg.val_fraction, cfg.seed)
    obs = torch.from_numpy(val.stacked_observations())
    human = torch.from_numpy(np.nan_to_num(val.human_action)).float()
    with torch.no_grad():
        loss = float(result.model.losses(obs, torch.from_numpy(val.intervention), human).total)
    assert loss == pytest.approx(result.loop.history[-1]["val_loss"], rel=1e-5)
    assert result.loop.best_val == pytest.approx(result.loop.history[-1]["val_loss"])


def test_model_selection_keeps_best_held_out_epoch(record):
    result = fit_mile(record, MileConfig.paper(**{**QUICK, "epochs": 12}, select_best=True, seed=0))
    vals = [row["val_loss"] for row in result.loop.history]
    assert result.loop.best_epoch == int(np.argmin(vals))
    assert result.val_rows > 0 and result.train_rows + result.val_rows == len(record)
    # the model in hand is the best epoch's: its held-out loss is the minimum seen
    val = record.select(np.isin(record.episode, np.unique(record.episode)[:0]))  # empty: sanity of select
    assert len(val) == 0
    assert result.loop.best_val == pytest.approx(min(vals))


def test_rollout_selection_keeps_the_best_scored_weights_and_only_when_given(record):
    """The authors' selection: candidates before training, every ``every`` epochs and at the end;
    the best score wins (the later one on a tie) and the model ends with exactly its weights."""
    scores = iter([0.1, 0.5, 0.2, 0.5, 0.3])  # candidates at epochs -1, 1, 3, 5, 6
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def score(modules) -> float:
        (model,) = modules
        seen[len(seen)] = {k: v.clone() for k, v in model.policy.state_dict().items()}
        return next(scores)

    cfg = MileConfig.paper(**{**QUICK, "epochs": 7, "val_fraction": 0.0}, seed=0)
    result = fit_mile(record, cfg, selection=RolloutSelection(score, every=2))
    assert result.loop.rollout_scores == [(-1, 0.1), (1, 0.5), (3, 0.2), (5, 0.5), (6, 0.3)]
    assert result.loop.best_epoch == 5 and len(result.loop.history) == 7
    for k, v in result.model.policy.state_dict().items():
        torch.testing.assert_close(v, seen[3][k], rtol=0, atol=0)  # epoch 5's, not the last (6)
    assert any(not torch.equal(v, seen[4][k]) for k, v in result.model.policy.state_dict().items())

    outside = fit_mile(record, cfg)  # without it: no rollouts, the last epoch's weights
    assert outside.loop.rollout_scores == [] and outside.loop.best_epoch == 6
    for k, v in outside.model.policy.state_dict().items():
        torch.testing.assert_close(v, seen[4][k], rtol=0, atol=0)  # scoring did not change the training
    with pytest.raises(ValueError, match="every >= 1"):
        RolloutSelection(score, every=0)


def test_early_stopping_stops(record):
    cfg = MileConfig.paper(**{**QUICK, "epochs": 400, "patience": 3, "lr": 5e-2}, select_best=True, seed=0)
    result = fit_mile(record, cfg)
    assert result.loop.stopped_early and len(result.loop.history) < 400


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, record):
    result = fit_mile(record, MileConfig.paper(**QUICK))
    path = result.checkpoint(iteration=3).save(tmp_path / "ckpt.pt")
    raw = torch.load(path, weights_only=True)  # nothing but tensors and primitives inside
    assert raw["format"] == "mile_ros.checkpoint"
    back = load_checkpoint(path, expected=record.spec)
    obs = torch.from_numpy(record.stacked_observations()[:50])
    for a, b in zip(result.model.policy(obs), back.policy(obs)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(
        result.model.intervention_probability(obs), back.intervention_model().intervention_probability(obs)
    )
    assert back.meta["iteration"] == 3 and back.cost == pytest.approx(1.0)
    runner = PolicyRunner(back)
    action = runner.act(record.observation[0])
    assert action.shape == (2,) and runner.intervention_probability() is not None


def test_wrong_spec_corrupt_and_missing_checkpoints_are_refused(tmp_path, record):
    result = fit_mile(record, MileConfig.paper(**{**QUICK, "epochs": 1}))
    path = result.checkpoint().save(tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="obs_dim is 6, expected 39"):
        load_checkpoint(path, expected=Spec(39, 2, False, frame_stack=0))
    with pytest.raises(CheckpointError, match="frame_stack is 0, expected 3"):
        load_checkpoint(path, expected=Spec(6, 2, False, frame_stack=3))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a mile_ros checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, record):
    result = fit_mile(record, MileConfig.paper(**{**QUICK, "epochs": 1}))
    ckpt = result.checkpoint()
    path = ckpt.save(tmp_path / "ckpt.pt")
    before = path.read_bytes()
    broken = MileCheckpoint(ckpt.spec, ckpt.policy, ckpt.mental, meta={"bad": object()})
    with pytest.raises(CheckpointError, match="would not load with weights_only"):
        broken.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.parametrize("discrete", [False, True])
def test_calibrated_cost_hits_target_rate(discrete):
    truth = make_ground_truth(Spec(5, 3, discrete, frame_stack=0), seed=2)
    obs = torch.from_numpy(truth.observations(2000, np.random.default_rng(0)))
    cost = calibrate_cost(truth.model, obs, 0.2)
    assert cost > 0
    assert float(truth.model.intervention_probability(obs).mean()) == pytest.approx(0.2, abs=1e-3)


def test_empty_dataset_is_refused(record):
    with pytest.raises(ValueError, match="empty"):
        fit_mile(record.select(np.zeros(len(record), bool)))


def test_a_non_finite_loss_stops_training_with_a_clear_error(record):
    from mile_ros.learning import TrainingDivergedError

    with pytest.raises(TrainingDivergedError, match="loss is"):  # an absurd step size overflows the weights
        fit_mile(record, MileConfig.paper(**{**QUICK, "epochs": 3, "lr": 1e30}))


def test_normaliser_keeps_a_feature_constant_in_its_data_within_a_few_units():
    """A goal position that never moved in the demonstrations must not become an input 50 units
    away when another episode puts it 5 cm further (what a 1e-3 floor on the std did)."""
    from mile_ros.learning import Normalizer
    from mile_ros.learning.networks import STD_FLOOR

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(0.0, 0.3, 500), np.full(500, 0.7)]).astype(np.float32)
    norm = Normalizer(2)
    norm.fit(x)
    assert float(norm.std[1]) == pytest.approx(STD_FLOOR)
    assert float(norm.std[0]) == pytest.approx(float(np.hypot(x[:, 0].std(), STD_FLOOR)), rel=1e-4)
    shifted = norm(torch.tensor([[0.0, 0.75]]))
    assert abs(float(shifted[0, 1])) <= 1.0


def test_a_shared_std_is_the_same_in_every_state_and_survives_a_checkpoint(tmp_path, record):
    result = fit_mile(record, MileConfig.paper(**QUICK, policy_std="shared"))
    obs = torch.from_numpy(record.stacked_observations()[:200])
    for net in (result.model.policy, result.model.mental):
        _, std = net(obs)
        assert torch.equal(std, std[:1].expand_as(std))  # one std per action dimension, whatever the state
    assert not torch.allclose(result.model.policy.log_std, torch.zeros(2))  # it was learned
    back = load_checkpoint(result.checkpoint().save(tmp_path / "shared.pt"), expected=record.spec)
    assert back.policy.std_mode == "shared" and back.mental.std_mode == "shared"
    for a, b in zip(result.model.policy(obs), back.policy(obs)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="policy_std"):
        fit_mile(record, MileConfig.paper(**QUICK, policy_std="per-state"))


def test_a_shared_std_started_from_a_per_state_policy_keeps_its_mean_and_average_log_std(record):
    from mile_ros.learning import build_policy
    from mile_ros.learning.networks import load_policy_weights

    init = fit_mile(record, MileConfig.paper(**QUICK)).checkpoint()
    obs = torch.from_numpy(record.stacked_observations())
    shared = build_policy(init.spec.stacked_dim, 2, False, init.policy.hidden, "shared")
    load_policy_weights(shared, init.policy, obs)
    with torch.no_grad():
        mean_init, std_init = init.policy(obs)
        mean_shared, std_shared = shared(obs)
    torch.testing.assert_close(mean_shared, mean_init, rtol=0, atol=0)
    torch.testing.assert_close(std_shared[0].log(), std_init.log().mean(0), rtol=1e-5, atol=1e-6)
    back = build_policy(init.spec.stacked_dim, 2, False, init.policy.hidden, "state")
    load_policy_weights(back, shared)
    with torch.no_grad():
        torch.testing.assert_close(back(obs)[1], std_shared, rtol=1e-6, atol=0)


def test_cost_from_rate_starts_at_the_records_own_intervention_rate(record):
    config = MileConfig.paper(**{**QUICK, "epochs": 1, "lr": 1e-9, "val_fraction": 0.0}, cost_from_rate=True)
    result = fit_mile(record, config)
    obs = torch.from_numpy(record.stacked_observations())
    predicted = float(result.model.intervention_probability(obs).mean())
    assert predicted == pytest.approx(float(record.intervention.mean()), abs=0.01)
    assert result.model.cost_value() != pytest.approx(QUICK["cost"])


@pytest.mark.slow
def test_a_shared_std_started_far_too_small_reaches_the_humans_spread_within_one_update(record):
    from mile_ros.learning.trainer import build_model

    config = MileConfig.paper(
        **{**QUICK, "val_fraction": 0.0, "lr": 1e-4, "epochs": 60}, policy_std="shared", std_step="scalar"
    )
    model = build_model(record.spec, config)
    assert model.scalar_parameters() == []
    stds = {id(model.policy.log_std), id(model.mental.log_std)}
    assert {id(p) for p in model.scalar_parameters(with_stds=True)} == stds
    model.policy.set_shared_log_std(torch.full((2,), -4.0))  # as a policy cloned from noise-free labels leaves it
    result = fit_mile(record, config, model=model)
    human = record.intervention.astype(bool)
    obs = torch.from_numpy(record.stacked_observations()[human])
    with torch.no_grad():
        mean, std = result.model.policy(obs)
    spread = (torch.from_numpy(record.human_action[human]) - mean).square().mean(0).sqrt()
    # at the networks' step (1e-4) it would stay near 0.02; at its own it gets to the residuals' scale
    assert (std[0] > 0.3 * spread).all(), (std[0], spread)
    frozen = fit_mile(record, replace(config, freeze_mental=True), init=result.checkpoint())
    assert [id(p) for p in frozen.model.scalar_parameters(True)] == [id(frozen.model.policy.log_std)]
