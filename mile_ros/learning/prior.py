"""The prior: demonstrations of pi_H (D0, what the initial policy was cloned from) in a learner's loss.

A demonstration is a draw from the human's own policy, so its log-likelihood under the policy
network is the exact term it adds to MILE's likelihood; for behaviour cloning it is one more
labelled row. Learners that also draw minibatches from the record index the joint range
``0 .. n_record + len(prior) - 1``: indices from ``n_record`` on are prior rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .dataset import InterventionDataset
from .networks import PolicyNet

__all__ = ["PriorTerm", "demonstrated_actions", "joint_rows"]


def demonstrated_actions(demos: InterventionDataset) -> np.ndarray:
    """The demonstrator's action per row: the human action where recorded, else the robot action.

    A rollout of the expert (or the initial policy's recipe, which labels noisy rollouts with the
    expert's clean actions) stores the expert's action as its robot action.
    """
    if demos.spec.discrete:
        have = (demos.human_action >= 0) & (demos.human_action < demos.spec.act_dim)
        return np.where(have, demos.human_action, demos.robot_action)
    have = np.isfinite(demos.human_action).all(1)
    return np.where(have[:, None], demos.human_action, demos.robot_action)


@dataclass
class PriorTerm:
    """``weight * -sum log pi(a|s)`` over prior rows, for minibatches of a joint index range."""

    obs: Tensor
    actions: Tensor
    weight: float
    n_record: int

    @classmethod
    def of(
        cls, prior: InterventionDataset | None, n_record: int, weight: float, padding: str = "repeat"
    ) -> PriorTerm | None:
        """None when there is no prior or its weight is 0 (the joint range is then the record's)."""
        if prior is None or len(prior) == 0 or weight == 0:
            return None
        if weight < 0:
            raise ValueError(f"the prior's weight must be >= 0, got {weight}")
        actions = torch.from_numpy(demonstrated_actions(prior))
        actions = actions.long() if prior.spec.discrete else actions.float()
        return cls(torch.from_numpy(prior.stacked_observations(padding)), actions, float(weight), n_record)

    def __len__(self) -> int:
        return len(self.obs)

    def split(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Record indices and prior indices (from 0) of one minibatch of the joint range."""
        is_prior = idx >= self.n_record
        return idx[~is_prior], idx[is_prior] - self.n_record

    def nll_sum(self, policy: PolicyNet, idx: Tensor, train_std: bool = True) -> Tensor:
        """The weighted negative log-likelihood of prior rows ``idx``, summed.

        ``train_std=False`` (Gaussian policies): the prior moves the mean only, its std is held as it
        is. The initial policy's recipe labels its demonstrations with the expert's noise-free
        actions, so their likelihood would shrink a learned std towards zero, well below the noise
        of the human whose interventions the record holds.
        """
        if len(idx) == 0:
            return self.obs.new_zeros(())
        out = policy(self.obs[idx])
        if not train_std and not policy.discrete:
            out = (out[0], out[1].detach())
        return -self.weight * policy.log_prob_of(out, self.actions[idx]).sum()


def joint_rows(n_record: int, prior: PriorTerm | None) -> int:
    """The length of the joint index range."""
    return n_record + (len(prior) if prior is not None else 0)
