"""Policy and mental-model networks: Gaussian and categorical MLPs with fitted input normalisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "STD_MODES",
    "CategoricalMLP",
    "GaussianMLP",
    "Normalizer",
    "PolicyNet",
    "build_policy",
    "load_policy_weights",
    "std_mode_of",
]

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
# Added in quadrature to every feature's std when a normaliser is fitted, in observation units.
# A policy cloned from a few demonstrations sees object and goal positions that never change within
# an episode: scaled by their (near-zero) spread, another episode's layout becomes an input tens
# of standard units away and the network extrapolates. Sized for positions in metres and
# unit-scale features (Metaworld, LunarLander, R3M embeddings).
STD_FLOOR = 0.1


class Normalizer(nn.Module):
    """Per-feature standardisation whose statistics are buffers, so checkpoints carry them."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray | Tensor, floor: float = STD_FLOOR) -> None:
        """Set the statistics from data (rows are samples): mean, and ``sqrt(var + floor^2)``."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        self.mean.copy_(x.mean(0))
        self.std.copy_((x.var(0, unbiased=False) + floor**2).sqrt())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def diag_gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Log-density of a diagonal Gaussian, summed over the last dimension."""
    z = (x - mean) / std
    return (-0.5 * z.square() - std.log()).sum(-1) - 0.5 * math.log(2.0 * math.pi) * mean.shape[-1]


def _mlp(inp: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inp, width), nn.ReLU()]
        inp = width
    return nn.Sequential(*layers)


class PolicyNet(nn.Module):
    """Common base: a normalised MLP trunk; subclasses add the distribution heads."""

    discrete: bool

    def __init__(self, obs_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.hidden = tuple(int(h) for h in hidden)
        self.normalizer = Normalizer(obs_dim)
        self.trunk = _mlp(obs_dim, self.hidden)
        self.feature_dim = self.hidden[-1] if self.hidden else obs_dim

    def features(self, obs: Tensor) -> Tensor:
        return self.trunk(self.normalizer(obs))


STD_MODES = ("state", "shared")


class GaussianMLP(PolicyNet):
    """Diagonal Gaussian policy; its standard deviation depends on the state or is shared by all states.

    ``std="state"``: a log-std head on the trunk. ``std="shared"``: one learned log-std per action
    dimension (a parameter named ``log_std``), so the spread cannot differ from state to state; MILE's
    value gap is measured in units of this std, and a per-state std lets the intervention terms be
    explained by shrinking or inflating it instead of by the mean (docs/learning.md).
    """

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), std: str = "state") -> None:
        super().__init__(obs_dim, hidden)
        if std not in STD_MODES:
            raise ValueError(f"std must be one of {STD_MODES}, got {std!r}")
        self.act_dim = act_dim
        self.std_mode = std
        self.mean_head = nn.Linear(self.feature_dim, act_dim)
        if std == "state":
            self.log_std_head = nn.Linear(self.feature_dim, act_dim)
        else:
            self.log_std = nn.Parameter(torch.zeros(act_dim))

    def raw_log_std(self, h: Tensor) -> Tensor:
        if self.std_mode == "state":
            return self.log_std_head(h)
        return self.shared_log_std().expand(*h.shape[:-1], self.act_dim)

    def shared_log_std(self) -> Tensor:
        """The shared log-std, bounded below smoothly: a hard clamp would stop its gradient for good."""
        return (LOG_STD_MIN + nn.functional.softplus(self.log_std - LOG_STD_MIN)).clamp(max=LOG_STD_MAX)

    @torch.no_grad()
    def set_shared_log_std(self, value: Tensor) -> None:
        """Set the parameter so that :meth:`shared_log_std` equals ``value`` (within the bounds)."""
        excess = (value - LOG_STD_MIN).clamp(min=1e-4)
        self.log_std.copy_(LOG_STD_MIN + torch.log(torch.expm1(excess)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mean, std)``, each of shape ``(..., act_dim)``."""
        h = self.features(obs)
        log_std = self.raw_log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean_head(h), log_std.exp()

    def log_prob(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.log_prob_of(self(obs), action)

    @staticmethod
    def log_prob_of(out: tuple[Tensor, Tensor], action: Tensor) -> Tensor:
        """Log-density of ``action`` under a forward pass's ``(mean, std)``."""
        return diag_gaussian_log_prob(action, *out)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True, generator: torch.Generator | None = None) -> Tensor:
        mean, std = self(obs)
        if deterministic:
            return mean
        return mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)


class CategoricalMLP(PolicyNet):
    """Softmax policy over ``n_actions`` discrete actions."""

    discrete = True

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__(obs_dim, hidden)
        self.act_dim = n_actions
        self.logits_head = nn.Linear(self.feature_dim, n_actions)

    def forward(self, obs: Tensor) -> Tensor:
        """Return log-probabilities of shape ``(..., n_actions)``."""
        return torch.log_softmax(self.logits_head(self.features(obs)), dim=-1)

    def log_prob(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.log_prob_of(self(obs), action)

    @staticmethod
    def log_prob_of(out: Tensor, action: Tensor) -> Tensor:
        """Log-probability of ``action`` under a forward pass's log-probabilities."""
        return out.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True, generator: torch.Generator | None = None) -> Tensor:
        log_p = self(obs)
        if deterministic:
            return log_p.argmax(-1)
        return torch.multinomial(log_p.exp().reshape(-1, self.act_dim), 1, generator=generator).reshape(
            log_p.shape[:-1]
        )


def build_policy(obs_dim: int, act_dim: int, discrete: bool, hidden: Sequence[int], std: str = "state") -> PolicyNet:
    """A Gaussian or categorical MLP; ``act_dim`` is the number of actions when discrete.

    ``std`` (Gaussian only): ``state`` or ``shared`` (see :class:`GaussianMLP`).
    """
    if discrete:
        return CategoricalMLP(obs_dim, act_dim, hidden)
    return GaussianMLP(obs_dim, act_dim, hidden, std)


def std_mode_of(state_dict: dict[str, Tensor]) -> str:
    """Which kind of Gaussian a saved state dict holds (``shared`` has a ``log_std`` parameter)."""
    return "shared" if "log_std" in state_dict else "state"


@torch.no_grad()
def load_policy_weights(target: PolicyNet, source: PolicyNet, obs: Tensor | None = None) -> None:
    """Copy ``source``'s weights into ``target``, converting between a per-state and a shared std.

    A shared std taken from a per-state one starts at the mean of its log-std over ``obs`` (the
    training states; all zeros when none are given); a per-state head taken from a shared std starts
    with zero weights and the shared value as its bias.
    """
    src_mode = getattr(source, "std_mode", None)
    dst_mode = getattr(target, "std_mode", None)
    if src_mode == dst_mode:
        target.load_state_dict(source.state_dict())
        return
    weights = {k: v for k, v in source.state_dict().items() if not k.startswith(("log_std", "log_std_head"))}
    target.load_state_dict(weights, strict=False)
    if dst_mode == "shared":
        level = torch.zeros(target.act_dim)
        if obs is not None and len(obs):
            level = source.raw_log_std(source.features(obs)).clamp(LOG_STD_MIN, LOG_STD_MAX).mean(0)
        target.set_shared_log_std(level)
    else:
        target.log_std_head.weight.zero_()
        target.log_std_head.bias.copy_(source.shared_log_std())
