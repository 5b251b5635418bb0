"""MileModel: the policy (pi_H), the mental model (pi_hat_R), cost and probit scale, and the losses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .intervention import (
    ContinuousForm,
    ContinuousIntervention,
    DiscreteForm,
    DiscreteIntervention,
    InterventionLogProbs,
)
from .networks import PolicyNet

__all__ = ["MileLosses", "MileModel"]


COST_FLOOR = 1e-6  # c = COST_FLOOR + exp(raw): log-scale steps, whatever the task's units


def _raw_cost(cost: float) -> float:
    return math.log(max(float(cost) - COST_FLOOR, COST_FLOOR))


@dataclass
class MileLosses:
    """Per-batch losses, each averaged over the batch's rows (so L_int + L_policy is NLL per step)."""

    intervention: Tensor
    policy: Tensor
    mental: Tensor
    total: Tensor


class MileModel(nn.Module):
    """The two networks of MILE and the intervention model's parameters.

    ``cost`` (``c >= 0``) and ``sigma`` (``> 0``) are stored as logarithms, so that a learned one moves
    by the same relative step whether the task's value gap is in units or hundreds; they are
    parameters only when learned, otherwise buffers of the same names.
    """

    def __init__(
        self,
        policy: PolicyNet,
        mental: PolicyNet,
        cost: float,
        sigma: float,
        learn_cost: bool = False,
        learn_sigma: bool = False,
        discrete_form: DiscreteForm | str = DiscreteForm.PER_ACTION,
        continuous_form: ContinuousForm | str = ContinuousForm.EXACT,
        quadrature_nodes: int = 32,
    ) -> None:
        super().__init__()
        if policy.discrete != mental.discrete or policy.act_dim != mental.act_dim:
            raise ValueError("policy and mental model must share the action space")
        if cost < 0 or sigma <= 0:
            raise ValueError(f"need cost >= 0 and sigma > 0, got cost={cost}, sigma={sigma}")
        self.policy = policy
        self.mental = mental
        self.discrete = policy.discrete
        raw_cost = torch.tensor(_raw_cost(cost))
        raw_sigma = torch.tensor(math.log(float(sigma)))
        if learn_cost:
            self.raw_cost = nn.Parameter(raw_cost)
        else:
            self.register_buffer("raw_cost", raw_cost)
        if learn_sigma:
            self.raw_sigma = nn.Parameter(raw_sigma)
        else:
            self.register_buffer("raw_sigma", raw_sigma)
        self.learn_cost, self.learn_sigma = learn_cost, learn_sigma
        self.discrete_model = DiscreteIntervention(discrete_form)
        self.continuous_model = ContinuousIntervention(continuous_form, quadrature_nodes)

    # ---- parameters -------------------------------------------------------------------------

    @property
    def cost(self) -> Tensor:
        return COST_FLOOR + self.raw_cost.exp()

    @property
    def sigma(self) -> Tensor:
        return self.raw_sigma.exp()

    def cost_value(self) -> float:
        return float(self.cost.detach())

    def sigma_value(self) -> float:
        return float(self.sigma.detach())

    @torch.no_grad()
    def set_cost(self, cost: float) -> None:
        self.raw_cost.fill_(_raw_cost(cost))

    def scalar_parameters(self, with_stds: bool = False) -> list[nn.Parameter]:
        """The learned ones of cost and probit scale (and, ``with_stds``, the networks' shared log-stds).

        They take their own, larger step (``MileConfig.scalar_lr``): a handful of numbers on a log
        scale that reach their maximum-likelihood values within one update, where the networks'
        weights move by small steps.
        """
        stds = [getattr(net, "log_std", None) for net in (self.policy, self.mental)] if with_stds else []
        found = [p for p in (self.raw_cost, self.raw_sigma, *stds) if isinstance(p, nn.Parameter)]
        return [p for p in found if p.requires_grad]

    # ---- the model --------------------------------------------------------------------------

    def _log_probs(self, policy_out, mental_out, human_action: Tensor | None) -> InterventionLogProbs:
        if self.discrete:
            return self.discrete_model.log_probs(policy_out, mental_out, self.cost, self.sigma, human_action)
        mu, std_h = policy_out
        m, std_r = mental_out
        return self.continuous_model.log_probs(mu, std_h, m, std_r, self.cost, self.sigma, human_action)

    def intervention_log_probs(self, obs: Tensor, human_action: Tensor | None = None) -> InterventionLogProbs:
        """``log P(I|s)`` and, given human actions, ``log p(a_H | s, I=1)``, for stacked observations."""
        return self._log_probs(self.policy(obs), self.mental(obs), human_action)

    @torch.no_grad()
    def intervention_probability(self, obs: Tensor) -> Tensor:
        """``P(I=1|s)``: how likely the human is to take over in each state."""
        return self.intervention_log_probs(obs).p_int

    def losses(
        self,
        obs: Tensor,
        intervention: Tensor,
        human_action: Tensor,
        lambda_int: float = 1.0,
        lambda_policy: float = 1.0,
        robot_action: Tensor | None = None,
        lambda_mental: float = 0.0,
    ) -> MileLosses:
        """``L = lambda_int L_int + lambda_policy L_policy (+ lambda_mental L_mental)``.

        L_policy's gradient never reaches the mental model. ``L_mental`` (off by default, not in the
        paper) anchors the mental model to the robot's recorded actions, the paper's assumption that
        the human's belief about the robot is accurate.
        """
        policy_out = self.policy(obs)
        mental_out = self.mental(obs)
        lp = self._log_probs(policy_out, mental_out, None)
        n = obs.shape[0]
        flag = intervention.to(lp.log_p_int.dtype)
        l_int = -(flag * lp.log_p_int + (1.0 - flag) * lp.log_p_no).sum() / n
        mask = intervention.bool()
        if self.discrete:
            # Small tensors: fewer ops beat fewer rows, so the policy term runs on every row, masked.
            lp_policy = self._log_probs(policy_out, mental_out.detach(), human_action)
            l_policy = -torch.where(mask, lp_policy.log_p_action, 0.0).sum() / n
        elif mask.any():
            detached = tuple(t[mask].detach() for t in mental_out)
            lp_policy = self._log_probs(tuple(t[mask] for t in policy_out), detached, human_action[mask])
            l_policy = -lp_policy.log_p_action.sum() / n
        else:
            l_policy = l_int.new_zeros(())
        total = lambda_int * l_int + lambda_policy * l_policy
        l_mental = l_int.new_zeros(())
        if lambda_mental and robot_action is not None:
            l_mental = -self.mental.log_prob_of(mental_out, robot_action).mean()
            total = total + lambda_mental * l_mental
        return MileLosses(l_int, l_policy, l_mental, total)
