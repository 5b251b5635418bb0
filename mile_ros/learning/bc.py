"""Behaviour cloning (optionally sample-weighted): initial policies, mental models and IL baselines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .dataset import holdout_mask
from .loop import LoopConfig, LoopResult, RolloutSelection, train_loop
from .networks import PolicyNet, build_policy
from .spec import Spec

__all__ = ["BCConfig", "fit_bc"]


@dataclass
class BCConfig(LoopConfig):
    hidden: tuple[int, ...] = (256, 256)
    val_fraction: float = 0.2
    fit_normalizer: bool = True  # False keeps an initial policy's statistics


def fit_bc(
    spec: Spec,
    obs: np.ndarray,
    actions: np.ndarray,
    episodes: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    config: BCConfig | None = None,
    policy: PolicyNet | None = None,
    desc: str = "BC",
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[PolicyNet, LoopResult]:
    """Maximise the weighted log-likelihood of ``actions`` given stacked ``obs``.

    ``policy`` is trained in place when given (fine-tuning), else a new one is built. Held-out
    episodes (when there are at least two) select the epoch by weighted NLL; ``selection`` and
    ``should_stop`` go to :func:`~mile_ros.learning.loop.train_loop`.
    """
    config = config or BCConfig()
    torch.manual_seed(config.seed)
    if policy is None:
        policy = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, config.hidden)
    obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
    act_t = torch.as_tensor(np.asarray(actions))
    act_t = act_t.long() if spec.discrete else act_t.float()
    w_t = torch.ones(len(obs_t)) if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    if len(obs_t) == 0:
        raise ValueError("behaviour cloning needs at least one sample")
    val_mask = torch.from_numpy(
        holdout_mask(
            np.zeros(len(obs_t)) if episodes is None else np.asarray(episodes), config.val_fraction, config.seed
        )
    )
    train_idx = torch.nonzero(~val_mask).squeeze(1)
    val_idx = torch.nonzero(val_mask).squeeze(1)
    if config.fit_normalizer:
        policy.normalizer.fit(obs_t[train_idx])

    def weighted_nll(idx: Tensor) -> Tensor:
        w = w_t[idx]
        return -(w * policy.log_prob(obs_t[idx], act_t[idx])).sum() / w.sum().clamp(min=1e-8)

    def batch_loss(batch: Tensor) -> Tensor:
        return weighted_nll(train_idx[batch])

    val_loss = (lambda: float(weighted_nll(val_idx))) if len(val_idx) else None
    result = train_loop(
        [policy], batch_loss, len(train_idx), config, val_loss, desc=desc, should_stop=should_stop, selection=selection
    )
    return policy, result
