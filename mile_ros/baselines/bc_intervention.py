"""BC-intervention: the paper's "neural network only" baseline.

One network models the record without MILE's intervention model: a classifier head gives
``P(I=1|s)`` (trained on every step by binary cross-entropy) and the policy head is trained by
behaviour cloning on the human's actions where they intervened. Both heads share the policy's trunk,
so the non-intervened steps shape the features only through the classifier. The classifier head is
saved in the checkpoint's ``meta`` and :func:`intervention_probability` reads it back. The prior
(the initial policy's demonstrations) trains the policy head only: its rows were not interventions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mile_ros.learning import (
    InterventionDataset,
    MileCheckpoint,
    PolicyNet,
    PriorTerm,
    RolloutSelection,
    holdout_mask,
    joint_rows,
    train_loop,
)

from .common import BaselineConfig, clone_policy, merge_demos

__all__ = ["BCInterventionConfig", "intervention_probability", "train"]

NAME = "bc_intervention"
# How the benchmark treats it (mile_ros.baselines: gets_demos, train, check_selection).
GETS_DEMOS = True  # expert demonstrations in the demonstration ablation
TAKES_PRIOR = True  # trains on the prior (D0) when given one
EPOCH_SELECTION = True  # rollout selection may pick among its epochs
CLASSIFIER_KEY = "intervention_classifier"


@dataclass
class BCInterventionConfig(BaselineConfig):
    lambda_classifier: float = 1.0


CONFIG = BCInterventionConfig


def _labels(data: InterventionDataset) -> Tensor:
    if data.spec.discrete:
        return torch.from_numpy(np.where(data.intervention, data.human_action, 0)).long()
    return torch.from_numpy(np.nan_to_num(data.human_action)).float()


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: BCInterventionConfig | None = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    config = config or BCInterventionConfig()
    data = merge_demos(dataset, demos)
    torch.manual_seed(config.seed)
    policy = clone_policy(init)
    head = nn.Linear(policy.feature_dim, 1)
    obs = torch.from_numpy(data.stacked_observations())
    flag = torch.from_numpy(data.intervention).float()
    human = _labels(data)
    val = torch.from_numpy(holdout_mask(data.episode, config.val_fraction, config.seed))
    train_idx, val_idx = torch.nonzero(~val).squeeze(1), torch.nonzero(val).squeeze(1)

    prior_term = PriorTerm.of(prior, len(train_idx), config.lambda_prior)

    def nll_sum(idx: Tensor) -> Tensor:  # the record's NLL: -log P(I) - I log pi(a_H), summed
        logit = head(policy.features(obs[idx])).squeeze(-1)
        l_cls = F.binary_cross_entropy_with_logits(logit, flag[idx], reduction="sum")
        mask = flag[idx].bool()
        l_bc = -policy.log_prob(obs[idx][mask], human[idx][mask]).sum() if mask.any() else logit.new_zeros(())
        return config.lambda_classifier * l_cls + l_bc

    def batch_loss(b: Tensor) -> Tensor:
        if prior_term is None:
            return nll_sum(train_idx[b]) / max(len(b), 1)
        rec, pri = prior_term.split(b)
        return (nll_sum(train_idx[rec]) + prior_term.nll_sum(policy, pri)) / len(b)

    val_loss = (lambda: float(nll_sum(val_idx) / len(val_idx))) if len(val_idx) else None
    n_rows = joint_rows(len(train_idx), prior_term)
    loop = train_loop(
        [policy, head], batch_loss, n_rows, config, val_loss, "BC-int", should_stop=should_stop, selection=selection
    )
    meta = {
        "trainer": "bc_intervention",
        "epochs_run": len(loop.history),
        "best_epoch": loop.best_epoch,
        CLASSIFIER_KEY: {k: v.detach().clone() for k, v in head.state_dict().items()},
    }
    return MileCheckpoint(data.spec, policy, meta=meta)


@torch.no_grad()
def intervention_probability(checkpoint: MileCheckpoint, stacked_obs: np.ndarray | Tensor) -> np.ndarray:
    """``P(I=1|s)`` from a BC-intervention checkpoint's classifier head."""
    state = checkpoint.meta.get(CLASSIFIER_KEY)
    if state is None:
        raise ValueError("this checkpoint has no intervention classifier (it was not trained by bc_intervention)")
    policy: PolicyNet = checkpoint.policy.eval()
    head = nn.Linear(policy.feature_dim, 1)
    head.load_state_dict(state)
    obs = torch.as_tensor(np.asarray(stacked_obs), dtype=torch.float32)
    return torch.sigmoid(head(policy.features(obs)).squeeze(-1)).numpy()
