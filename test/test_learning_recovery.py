"""Recovery: data drawn from the intervention model with known networks and cost is fit back.

The truth is a random policy network, a mental model that disagrees with it in some states and
not others, and a cost. MILE, trained from scratch with a learned cost, must predict the held-out
intervention probability (correlation > 0.9), recover the policy, and land near the true cost.
"""

import copy

import numpy as np
import pytest
import torch

from mile_ros.learning import MileCheckpoint, MileConfig, Spec, fit_mile
from mile_ros.learning.networks import build_policy
from mile_ros.learning.synthetic import make_ground_truth, sample_record

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier


@pytest.mark.parametrize(
    "discrete,true_cost",
    [(False, 4.0), (True, 1.0)],
    ids=["continuous", "discrete"],
)
def test_mile_recovers_the_model_that_made_the_data(discrete, true_cost):
    spec = Spec(8, 4, discrete, frame_stack=0)
    truth = make_ground_truth(spec, hidden=(16,), cost=true_cost, sigma=1.0, seed=1)
    record = sample_record(truth, episodes=40, steps=500, seed=2)
    assert 0.15 < record.intervention_rate < 0.5

    config = MileConfig.paper(
        hidden=(64, 64),
        lr=2e-3,
        batch_size=512,
        epochs=RECOVERY_EPOCHS,
        cost=0.5 * true_cost,  # start far from the truth
        sigma=1.0,
        learn_cost=True,
        lambda_mental=1.0,  # without the anchor the cost is not identifiable (docs/mile-model-notes.md)
        select_best=True,  # 40 episodes: enough to hold 8 out and select by their NLL
        val_fraction=0.2,
        patience=20,
        seed=0,
    )
    result = fit_mile(record, config)
    model = result.model

    held_out = torch.from_numpy(truth.observations(5000, np.random.default_rng(99)))
    p_true = truth.model.intervention_probability(held_out).numpy()
    p_fit = model.intervention_probability(held_out).numpy()
    corr = np.corrcoef(p_true, p_fit)[0, 1]
    assert corr > 0.9, f"correlation of P(I=1|s) with the truth is {corr:.3f}"
    assert abs(p_fit.mean() - p_true.mean()) < 0.05

    with torch.no_grad():
        if discrete:
            tv = 0.5 * (truth.model.policy(held_out).exp() - model.policy(held_out).exp()).abs().sum(-1).mean()
            assert tv < 0.1, f"total variation between true and fit policies is {tv:.3f}"
        else:
            true_mean, fit_mean = truth.model.policy(held_out)[0], model.policy(held_out)[0]
            err = (true_mean - fit_mean).abs().mean() / true_mean.abs().mean()
            assert err < 0.15, f"relative policy mean error is {err:.3f}"
    assert model.cost_value() == pytest.approx(true_cost, rel=0.25)


RECOVERY_EPOCHS = 200


def test_a_frozen_mental_model_stays_put_and_makes_the_cost_identifiable():
    """With the human's true belief given and frozen, no anchor is needed to find the cost."""
    spec = Spec(8, 4, False, frame_stack=0)
    true_cost = 4.0
    truth = make_ground_truth(spec, hidden=(16,), cost=true_cost, sigma=1.0, seed=1)
    record = sample_record(truth, episodes=20, steps=500, seed=2)
    torch.manual_seed(5)
    fresh_policy = build_policy(spec.stacked_dim, spec.act_dim, False, (64, 64))
    init = MileCheckpoint(spec, fresh_policy, copy.deepcopy(truth.model.mental), cost=0.5 * true_cost, sigma=1.0)
    config = MileConfig.paper(
        hidden=(64, 64),
        lr=2e-3,
        batch_size=512,
        epochs=60,
        cost=0.5 * true_cost,
        sigma=1.0,
        learn_cost=True,
        freeze_mental=True,
        lambda_mental=1.0,  # ignored: a frozen mental model has nothing to anchor
        refit_normalizer=True,  # the fresh policy's, not the frozen mental model's
        seed=0,
    )
    model = fit_mile(record, config, init=init).model
    for name, value in truth.model.mental.state_dict().items():
        torch.testing.assert_close(model.mental.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert not torch.equal(model.policy.mean_head.weight, fresh_policy.mean_head.weight)
    held_out = torch.from_numpy(truth.observations(5000, np.random.default_rng(99)))
    p_true = truth.model.intervention_probability(held_out).numpy()
    p_fit = model.intervention_probability(held_out).numpy()
    assert np.corrcoef(p_true, p_fit)[0, 1] > 0.9
    assert model.cost_value() == pytest.approx(true_cost, rel=0.25)

    with pytest.raises(ValueError, match="initial checkpoint"):
        fit_mile(record, MileConfig.paper(freeze_mental=True, epochs=1))
