"""Data drawn from the intervention model itself, with known ground truth (tests, demo, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.special import ndtr

from .dataset import NO_ACTION, InterventionDataset
from .model import MileModel
from .networks import build_policy
from .spec import Spec

__all__ = ["GroundTruth", "make_ground_truth", "sample_record"]


@dataclass
class GroundTruth:
    """A MileModel whose networks define the 'true' human (policy) and their mental model."""

    spec: Spec
    model: MileModel

    def observations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """States to sample at: standard-normal stacked observations."""
        return rng.standard_normal((n, self.spec.stacked_dim)).astype(np.float32)


def make_ground_truth(
    spec: Spec,
    hidden: tuple[int, ...] = (64, 64),
    cost: float = 2.0,
    sigma: float = 1.0,
    seed: int = 0,
    mental_offset: float | None = None,
    logit_scale: float = 4.0,
) -> GroundTruth:
    """Random networks with a mental model that disagrees with the policy by a state-dependent amount."""
    torch.manual_seed(seed)
    if mental_offset is None:  # sized so that P(I=1|s) spreads over states (std ~0.1-0.15, mean ~0.3)
        mental_offset = 2.0 if spec.discrete else 0.3
    policy = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, hidden)
    mental = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, hidden)
    with torch.no_grad():
        mental.load_state_dict(policy.state_dict())
        for p_m in mental.parameters():  # a perturbed copy: close in some states, far in others
            p_m.add_(mental_offset * torch.randn_like(p_m) * p_m.abs().mean())
        if spec.discrete:  # confident policies, so that value gaps vary between states
            for net in (policy, mental):
                net.logits_head.weight.mul_(logit_scale)
        else:
            for net in (policy, mental):  # means of order 0.5, varied stds around 0.3
                net.mean_head.weight.mul_(5.0)
                net.log_std_head.bias.fill_(np.log(0.3))
                net.log_std_head.weight.mul_(0.3)
    model = MileModel(policy, mental, cost, sigma).eval()
    return GroundTruth(spec, model)


@torch.no_grad()
def sample_record(truth: GroundTruth, episodes: int, steps: int, seed: int = 0) -> InterventionDataset:
    """Sample ``(s, a_R, I, a_H)`` from the model: ``a ~ pi_H``, ``I ~ Bernoulli(Phi(z(a)))``, ``a_R ~ pi_hat_R``.

    Drawing ``a`` from ``pi_H`` and keeping it with probability ``Phi((v(s,a) - c)/sigma)`` samples
    ``P(a_H = a, I = 1 | s)`` exactly (eqs. 1 and 3). Each row's stacked observation is drawn
    independently, so the dataset uses ``frame_stack = 0`` over the stacked vector.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model, spec = truth.model, truth.spec
    n = episodes * steps
    obs = torch.from_numpy(truth.observations(n, rng))
    if spec.discrete:
        log_h, log_r = model.policy(obs), model.mental(obs)
        a = torch.multinomial(log_h.exp(), 1, generator=gen).squeeze(1)
        z = (model.discrete_model.value_gap(log_h, log_r) - model.cost) / model.sigma
        p_keep = ndtr(z.gather(1, a.unsqueeze(1)).squeeze(1))
        robot = torch.multinomial(log_r.exp(), 1, generator=gen).squeeze(1)
    else:
        (mu, std_h), (m, std_r) = model.policy(obs), model.mental(obs)
        a = mu + std_h * torch.randn(mu.shape, generator=gen)
        spread = ((std_r**2 + (m - mu) ** 2) / std_h**2).sum(-1)
        q = (((a - mu) / std_h) ** 2).sum(-1)
        p_keep = ndtr((0.5 * (spread - q) - model.cost) / model.sigma)
        robot = m + std_r * torch.randn(m.shape, generator=gen)
    flag = torch.rand(n, generator=gen) < p_keep
    if spec.discrete:
        human = torch.where(flag, a, torch.full_like(a, NO_ACTION))
    else:
        human = torch.where(flag.unsqueeze(1), a, torch.full_like(a, float("nan")))
    flat = Spec(spec.stacked_dim, spec.act_dim, spec.discrete, frame_stack=0)
    return InterventionDataset(
        flat,
        obs.numpy(),
        robot.numpy(),
        flag.numpy(),
        human.numpy(),
        np.repeat(np.arange(episodes), steps),
        np.tile(np.arange(steps), episodes),
    )
