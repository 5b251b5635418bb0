"""The intervention model's closed forms against brute-force Monte Carlo, and its basic properties."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from mile_ros.learning import (
    ContinuousIntervention,
    DiscreteIntervention,
    MileConfig,
    Spec,
    build_model,
    chi2_probit_expectation,
    gaussian_spread,
)

MC = 200_000


def _random_gaussians(rng, dim, std_scale):
    mu = rng.normal(size=dim)
    std_h = std_scale * np.exp(rng.uniform(-0.5, 0.5, size=dim))
    m = mu + rng.normal(scale=std_scale, size=dim)
    std_r = std_scale * np.exp(rng.uniform(-0.5, 0.5, size=dim))
    return mu, std_h, m, std_r


def _mc_continuous(mu, std_h, m, std_r, cost, sigma, rng):
    """P(I=1|s) by brute force: sample a ~ pi_H and a' ~ pi_hat_R, no closed forms."""

    def log_pi(a):
        return norm.logpdf(a, mu, std_h).sum(-1)

    expected = log_pi(m + std_r * rng.standard_normal((MC, len(mu)))).mean()
    a = mu + std_h * rng.standard_normal((MC, len(mu)))
    return norm.cdf((log_pi(a) - expected - cost) / sigma).mean()


@pytest.mark.parametrize(
    "dim,std_scale,cost,sigma",
    [
        (4, 0.3, 2.0, 1.5),
        (1, 1.0, 0.5, 0.3),
        (4, 1e-3, 2.0, 3.0),
        (4, 10.0, 1.0, 2.0),
        (32, 0.5, 5.0, 4.0),
        (64, 0.2, 10.0, 8.0),
    ],
)
def test_continuous_probability_matches_monte_carlo(dim, std_scale, cost, sigma):
    rng = np.random.default_rng(dim)
    mu, std_h, m, std_r = _random_gaussians(rng, dim, std_scale)
    expected = _mc_continuous(mu, std_h, m, std_r, cost, sigma, rng)
    t = [torch.tensor(x, dtype=torch.float64).unsqueeze(0) for x in (mu, std_h, m, std_r)]
    lp = ContinuousIntervention().log_probs(
        *t, torch.tensor(cost, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64)
    )
    mc_se = math.sqrt(expected * (1 - expected) / MC) + 2e-3  # sampling error of both MC averages
    assert lp.p_int.item() == pytest.approx(expected, abs=4 * mc_se)
    assert (lp.log_p_int.exp() + lp.log_p_no.exp()).item() == pytest.approx(1.0, abs=1e-9)


def test_spread_is_dimension_when_mental_model_equals_policy():
    mu, std = torch.randn(5, 6), torch.rand(5, 6) + 0.1
    assert torch.allclose(gaussian_spread(mu, std, mu, std), torch.full((5,), 6.0))


@pytest.mark.parametrize("dim", [1, 4, 20, 100])
@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0, 150.0])
def test_chi2_quadrature_matches_sampling(dim, scale):
    rng = np.random.default_rng(0)
    q = rng.chisquare(dim, size=MC)
    thresholds = np.array([dim - 2 * math.sqrt(2 * dim), dim, dim + 2 * math.sqrt(2 * dim)])
    expected = np.array([norm.cdf((t - q) / scale).mean() for t in thresholds])
    log_in, log_out = chi2_probit_expectation(
        torch.tensor(thresholds), torch.tensor(float(scale), dtype=torch.float64), dim
    )
    np.testing.assert_allclose(log_in.exp().numpy(), expected, atol=4e-3)
    np.testing.assert_allclose(log_out.exp().numpy(), 1 - expected, atol=4e-3)


def _random_categoricals(rng, k, temperature):
    logits_h = torch.tensor(rng.normal(size=k) / temperature)
    logits_r = torch.tensor(rng.normal(size=k) / temperature)
    return torch.log_softmax(logits_h, -1).unsqueeze(0), torch.log_softmax(logits_r, -1).unsqueeze(0)


@pytest.mark.parametrize("k,temperature", [(4, 1.0), (4, 0.05), (18, 0.5), (2, 3.0)])
def test_discrete_probability_matches_monte_carlo(k, temperature):
    rng = np.random.default_rng(k)
    log_h, log_r = _random_categoricals(rng, k, temperature)
    cost, sigma = 0.5, 1.2
    a = rng.choice(k, size=MC, p=log_h.exp()[0].numpy())
    a_robot = rng.choice(k, size=MC, p=log_r.exp()[0].numpy())
    lh = log_h[0].numpy()
    expected_log = lh[a_robot].mean()  # E_{a'~pi_hat_R} log pi_H(a'), sampled
    expected = norm.cdf((lh[a] - expected_log - cost) / sigma).mean()
    lp = DiscreteIntervention().log_probs(
        log_h, log_r, torch.tensor(cost, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64)
    )
    assert lp.p_int.item() == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("form", ["per_action", "authors"])
def test_discrete_classes_are_a_distribution(form):
    rng = np.random.default_rng(3)
    log_h = torch.log_softmax(torch.tensor(rng.normal(size=(50, 6)) * 3), -1)
    log_r = torch.log_softmax(torch.tensor(rng.normal(size=(50, 6)) * 3), -1)
    classes = DiscreteIntervention(form).class_log_probs(log_h, log_r, torch.tensor(0.7), torch.tensor(0.9)).exp()
    assert classes.shape == (50, 7)
    assert ((classes >= 0) & (classes <= 1)).all()
    torch.testing.assert_close(classes.sum(-1), torch.ones(50, dtype=classes.dtype))
    lp = DiscreteIntervention(form).log_probs(log_h, log_r, torch.tensor(0.7), torch.tensor(0.9))
    torch.testing.assert_close(lp.p_int, 1 - classes[:, -1])


def test_exact_tilted_density_integrates_to_one():
    """eq. 3: E_{a~pi_H}[p(a|I=1) / pi_H(a)] = 1."""
    rng = np.random.default_rng(5)
    mu, std_h, m, std_r = (torch.tensor(x).unsqueeze(0) for x in _random_gaussians(rng, 4, 0.4))
    a = mu + std_h * torch.randn(MC, 4, dtype=torch.float64)
    model = ContinuousIntervention("exact")
    cost, sigma = torch.tensor(3.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    lp = model.log_probs(mu.expand(MC, 4), std_h.expand(MC, 4), m.expand(MC, 4), std_r.expand(MC, 4), cost, sigma, a)
    log_pi = torch.distributions.Normal(mu, std_h).log_prob(a).sum(-1)
    assert (lp.log_p_action - log_pi).exp().mean().item() == pytest.approx(1.0, abs=0.01)


def _model(discrete, cost=1.0, sigma=1.0):
    spec = Spec(6, 3, discrete, frame_stack=0)
    return spec, build_model(spec, MileConfig.paper(hidden=(32, 32), cost=cost, sigma=sigma, seed=1))


@pytest.mark.parametrize("discrete", [False, True])
def test_more_cost_fewer_interventions(discrete):
    spec, model = _model(discrete)
    obs = torch.randn(256, spec.stacked_dim)
    with torch.no_grad():  # make the mental model disagree with the policy
        for p in model.mental.parameters():
            p.add_(0.2 * torch.randn_like(p))
    rates = []
    for c in [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0]:
        model.set_cost(c)
        p = model.intervention_probability(obs)
        assert ((p >= 0) & (p <= 1)).all()
        rates.append(p)
    for lower, higher in zip(rates[1:], rates[:-1]):
        assert (lower <= higher + 1e-6).all()
    assert rates[-1].mean() < rates[0].mean() - 0.3


@pytest.mark.parametrize("discrete", [False, True])
def test_farther_mental_model_more_interventions(discrete):
    """Move the mental model away from the policy step by step: P(I=1|s) rises in every state.

    Continuous: shift the mental mean (D grows). Discrete: flatten the mental model towards uniform
    (pi_hat_R ~ pi_H^tau with falling tau lowers E_{pi_hat_R} log pi_H).
    """
    spec, model = _model(discrete, cost=2.0)
    obs = torch.randn(256, spec.stacked_dim)
    model.mental.load_state_dict(model.policy.state_dict())
    previous = None
    for step in [0.0, 0.3, 0.6, 0.9]:
        _, moved = _model(discrete, cost=2.0)
        moved.mental.load_state_dict(model.policy.state_dict())
        with torch.no_grad():
            if discrete:
                moved.mental.logits_head.weight.mul_(1 - step)
                moved.mental.logits_head.bias.mul_(1 - step)
            else:
                moved.mental.mean_head.bias.add_(step)
        p = moved.intervention_probability(obs)
        if previous is not None:
            assert (p >= previous - 1e-6).all()
            assert p.mean() > previous.mean()
        previous = p


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("form", ["default", "authors"])
def test_policy_loss_never_reaches_mental_model(discrete, form):
    kw = {"discrete_form": "authors"} if discrete and form == "authors" else {}
    if not discrete and form == "authors":
        kw = {"continuous_form": "authors"}
    spec = Spec(6, 3, discrete, frame_stack=0)
    model = build_model(spec, MileConfig.paper(hidden=(16,), cost=0.5, sigma=1.0, learn_cost=True, **kw))
    obs = torch.randn(64, spec.stacked_dim)
    flag = torch.rand(64) < 0.5
    human = torch.randint(3, (64,)) if discrete else torch.randn(64, 3)
    losses = model.losses(obs, flag, human)

    def grads(loss):
        model.zero_grad()
        loss.backward(retain_graph=True)
        norm_of = lambda net: sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None)  # noqa: E731
        return norm_of(model.policy), norm_of(model.mental)

    pol, men = grads(losses.policy)
    assert pol > 0 and men == 0.0
    pol, men = grads(losses.intervention)
    assert pol > 0 and men > 0


def test_exact_losses_are_the_records_negative_log_likelihood():
    """With eq. 3, L_int + L_policy equals the NLL of the (K+1)-class record (discrete)."""
    spec, model = _model(True, cost=0.3)
    obs = torch.randn(200, spec.stacked_dim)
    flag = torch.rand(200) < 0.4
    human = torch.randint(3, (200,))
    losses = model.losses(obs, flag, human)
    classes = model.discrete_model.class_log_probs(model.policy(obs), model.mental(obs), model.cost, model.sigma)
    label = torch.where(flag, human, torch.full_like(human, 3))
    nll = -classes.gather(1, label.unsqueeze(1)).mean()
    assert float(losses.intervention + losses.policy) == pytest.approx(float(nll), rel=1e-5)


def test_log_ndtr_is_accurate_with_finite_gradients_far_in_the_tail():
    from mile_ros.learning.intervention import log_ndtr

    z = torch.cat([-torch.logspace(-2, 7, 2000, dtype=torch.float64), torch.linspace(0, 30, 50, dtype=torch.float64)])
    z.requires_grad_(True)
    value = log_ndtr(z)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(z.grad).all()
    # d/dz log Phi(z) = pdf/cdf, which tends to -z in the left tail
    far = z.detach() < -100
    torch.testing.assert_close(z.grad[far], -z.detach()[far], rtol=1e-3, atol=0)
    moderate = (z.detach() > -20) & (z.detach() < 5)
    torch.testing.assert_close(value[moderate], torch.special.log_ndtr(z.detach()[moderate]))


def test_collapsed_policy_std_and_distant_human_actions_give_finite_gradients():
    """A behaviour-cloned initial policy's std can collapse to the floor; the losses must stay trainable."""
    spec, model = _model(False, cost=60.0, sigma=75.0)
    with torch.no_grad():
        for net in (model.policy, model.mental):
            net.log_std_head.bias.fill_(-20.0)  # clamped to the floor
    obs = torch.randn(128, spec.stacked_dim)
    human = 20.0 * torch.randn(128, 3)  # thousands of stds away: z of order -1e5
    losses = model.losses(obs, torch.ones(128, dtype=torch.bool), human)
    losses.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(losses.total) and all(torch.isfinite(g).all() for g in grads)
