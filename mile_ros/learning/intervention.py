"""The MILE intervention model (docs/mile-model.md, the paper's eqs. 1-5).

Everything here is deterministic and differentiable: the discrete case sums over actions exactly;
the Gaussian case uses the closed-form spread ``D(s)`` and a one-dimensional expectation over a
chi-square, computed by quadrature instead of Monte Carlo sampling.

Notation: ``z = (v - c) / sigma`` is the probit argument, ``v`` the value gap, ``c`` the cost and
``sigma`` the probit scale. Functions return log-probabilities so that losses stay finite when an
intervention is very (un)likely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import numpy as np
import torch
from scipy.special import roots_genlaguerre, roots_hermitenorm
from torch import Tensor
from torch.special import ndtr

from .networks import diag_gaussian_log_prob

__all__ = [
    "ContinuousIntervention",
    "DiscreteIntervention",
    "InterventionLogProbs",
    "chi2_probit_expectation",
    "gaussian_spread",
]


class DiscreteForm(StrEnum):
    """How ``p(a_H = k, I = 1 | s)`` is formed for discrete actions."""

    PER_ACTION = "per_action"  # pi_H(k) * Phi((v(s,k) - c) / sigma): the paper's model (default)
    AUTHORS = "authors"  # pi_H(k) * P(I=1|s): the authors' code


class ContinuousForm(StrEnum):
    """How ``p(a_H | s, I = 1)`` is formed for Gaussian policies."""

    EXACT = "exact"  # eq. 3, the tilted density: with it L_int + L_policy is the record's exact NLL
    AUTHORS = "authors"  # N(p * mu, p * sigma_H) with p = P(I=1|s): the authors' code


@dataclass(frozen=True)
class InterventionLogProbs:
    """Per-state log-probabilities of the intervention model.

    ``log_p_int`` and ``log_p_no`` are ``log P(I=1|s)`` and ``log P(I=0|s)``; ``log_p_action`` is
    ``log p(a_H | s, I=1)`` for the given human actions (meaningful only where ``I = 1``).
    """

    log_p_int: Tensor
    log_p_no: Tensor
    log_p_action: Tensor | None = None

    @property
    def p_int(self) -> Tensor:
        return self.log_p_int.exp()


_ASYMPTOTIC_BELOW = -20.0


def log_ndtr(z: Tensor) -> Tensor:
    """``log Phi(z)`` with a correct gradient everywhere.

    torch's ``log_ndtr`` is accurate in value, but its gradient is wrong below about -1000 and NaN
    in places beyond -5e4 (measured). That happens in training when a policy's std collapses and a
    human action lies thousands of stds away. Below -20 the asymptotic series
    ``-z^2/2 - log(-z) - log(2 pi)/2 + log(1 - 1/z^2 + 3/z^4)`` (relative error < 3e-7) is used.
    """
    inner = z.clamp(min=_ASYMPTOTIC_BELOW)
    tail = z.clamp(max=_ASYMPTOTIC_BELOW)
    inv2 = tail.square().reciprocal()
    series = (
        -0.5 * tail.square()
        - torch.log(-tail)
        - 0.5 * math.log(2.0 * math.pi)
        + torch.log1p(-inv2 + 3.0 * inv2.square())
    )
    return torch.where(z < _ASYMPTOTIC_BELOW, series, torch.special.log_ndtr(inner))


# --------------------------------------------------------------------------------------------
# Discrete actions
# --------------------------------------------------------------------------------------------


class DiscreteIntervention:
    """Intervention model for categorical ``pi_H`` (policy) and ``pi_hat_R`` (mental model)."""

    def __init__(self, form: DiscreteForm | str = DiscreteForm.PER_ACTION) -> None:
        self.form = DiscreteForm(form)

    @staticmethod
    def value_gap(log_pi_h: Tensor, log_pi_r: Tensor) -> Tensor:
        """``v(s, k) = log pi_H(k|s) - sum_a pi_hat_R(a|s) log pi_H(a|s)`` for every action k."""
        expected = (log_pi_r.exp() * log_pi_h).sum(-1, keepdim=True)
        return log_pi_h - expected

    def class_log_probs(self, log_pi_h: Tensor, log_pi_r: Tensor, cost: Tensor, sigma: Tensor) -> Tensor:
        """Log-probabilities of the K+1 classes: "intervene with action k" (k < K) and "no intervention"."""
        z = (self.value_gap(log_pi_h, log_pi_r) - cost) / sigma
        if self.form is DiscreteForm.PER_ACTION:
            log_int = log_pi_h + log_ndtr(z)
            log_no = torch.logsumexp(log_pi_h + log_ndtr(-z), dim=-1, keepdim=True)
        else:
            log_p_int = torch.logsumexp(log_pi_h + log_ndtr(z), dim=-1, keepdim=True)
            log_int = log_pi_h + log_p_int
            log_no = torch.logsumexp(log_pi_h + log_ndtr(-z), dim=-1, keepdim=True)
        return torch.cat([log_int, log_no], dim=-1)

    def log_probs(
        self,
        log_pi_h: Tensor,
        log_pi_r: Tensor,
        cost: Tensor,
        sigma: Tensor,
        human_action: Tensor | None = None,
    ) -> InterventionLogProbs:
        """``P(I|s)`` (eq. 1) and, given integer human actions, ``log p(a_H | s, I=1)`` (eq. 3)."""
        z = (self.value_gap(log_pi_h, log_pi_r) - cost) / sigma
        log_p_int = torch.logsumexp(log_pi_h + log_ndtr(z), dim=-1)
        log_p_no = torch.logsumexp(log_pi_h + log_ndtr(-z), dim=-1)
        log_p_action = None
        if human_action is not None:
            k = human_action.long().clamp(0, log_pi_h.shape[-1] - 1).unsqueeze(-1)
            log_pi_k = log_pi_h.gather(-1, k).squeeze(-1)
            if self.form is DiscreteForm.PER_ACTION:
                log_p_action = log_pi_k + log_ndtr(z.gather(-1, k).squeeze(-1)) - log_p_int
            else:
                log_p_action = log_pi_k
        return InterventionLogProbs(log_p_int, log_p_no, log_p_action)


# --------------------------------------------------------------------------------------------
# Gaussian actions
# --------------------------------------------------------------------------------------------


def gaussian_spread(mu: Tensor, std_h: Tensor, m: Tensor, std_r: Tensor) -> Tensor:
    """``D(s) = sum_i (S_i^2 + (m_i - mu_i)^2) / sigma_H,i^2``: the mental model's spread under pi_H."""
    return ((std_r.square() + (m - mu).square()) / std_h.square()).sum(-1)


@lru_cache(maxsize=64)
def _laguerre_rule(dim: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``q_j`` and log-weights for ``E_{q ~ chi2_dim} f(q) ~= sum_j w_j f(q_j)``."""
    alpha = dim / 2.0 - 1.0
    x, w = roots_genlaguerre(nodes, alpha)
    log_w = np.log(w) - math.lgamma(dim / 2.0)  # the weights of x^alpha e^-x integrate to Gamma(dim/2)
    return 2.0 * x, log_w


@lru_cache(maxsize=8)
def _hermite_rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log-weights for ``E_{Z ~ N(0,1)} f(Z)``."""
    x, w = roots_hermitenorm(nodes)
    return x, np.log(w / math.sqrt(2.0 * math.pi))


class _Chi2LogCdf(torch.autograd.Function):
    """``log F_chi2_k(x)`` and ``log(1 - F)`` with the analytic derivative in ``x``.

    torch's ``gammainc`` has no gradient in its second argument; the density gives it exactly.
    """

    @staticmethod
    def forward(ctx, x: Tensor, dof: float):  # type: ignore[override]
        a = dof / 2.0
        xh = (x / 2.0).clamp(min=0.0)
        lower = torch.special.gammainc(torch.full_like(xh, a), xh)
        upper = torch.special.gammaincc(torch.full_like(xh, a), xh)
        tiny = torch.finfo(x.dtype).tiny
        ctx.save_for_backward(xh, lower, upper)
        ctx.a = a
        return lower.clamp(min=tiny).log(), upper.clamp(min=tiny).log()

    @staticmethod
    def backward(ctx, g_lower: Tensor, g_upper: Tensor):  # type: ignore[override]
        xh, lower, upper = ctx.saved_tensors
        a = ctx.a
        tiny = torch.finfo(xh.dtype).tiny
        # d/dx F(x) = chi2 density = (x/2)^(a-1) e^(-x/2) / (2 Gamma(a)); zero for x <= 0.
        log_pdf = (a - 1.0) * xh.clamp(min=tiny).log() - xh - math.lgamma(a) - math.log(2.0)
        pdf = torch.where(xh > 0, log_pdf.exp(), torch.zeros_like(xh))
        grad = g_lower * pdf / lower.clamp(min=tiny) - g_upper * pdf / upper.clamp(min=tiny)
        return grad, None


def chi2_probit_expectation(threshold: Tensor, scale: Tensor, dim: int, nodes: int = 32) -> tuple[Tensor, Tensor]:
    """``log E_{q~chi2_dim}[Phi((threshold - q) / scale)]`` and the log of its complement.

    Two deterministic rules, each exact where the other is weak, chosen by which integrand is
    smoother: Gauss-Laguerre over ``q`` when the probit is wide compared with the chi-square's
    spread, Gauss-Hermite over the probit's noise of the chi-square CDF when it is sharp. Both are
    differentiable in ``threshold`` and ``scale``. A scalar ``scale`` (the usual case) evaluates one
    rule only.
    """
    # Crossover measured against adaptive quadrature: Laguerre's error stays below 4e-4 down to a
    # probit 0.5x the chi-square's standard deviation, Hermite's below 2e-3 under 0.4x (1e-4 for
    # dim >= 4); the kink of the chi-square CDF at 0 limits Hermite for dim <= 2.
    sharp = scale < 0.4 * math.sqrt(2.0 * dim)
    if scale.numel() == 1:
        rule = _hermite_expectation if bool(sharp) else _laguerre_expectation
        return rule(threshold, scale.reshape(()), dim, nodes)
    lag = _laguerre_expectation(threshold, scale, dim, nodes)
    her = _hermite_expectation(threshold, scale, dim, nodes)
    return torch.where(sharp, her[0], lag[0]), torch.where(sharp, her[1], lag[1])


_TAIL = 1e-5  # below this, a probability is recomputed in log space


def _laguerre_expectation(threshold: Tensor, scale: Tensor, dim: int, nodes: int) -> tuple[Tensor, Tensor]:
    q_np, log_w_np = _laguerre_rule(dim, nodes)
    q = torch.as_tensor(q_np, dtype=threshold.dtype, device=threshold.device)
    log_w = torch.as_tensor(log_w_np, dtype=threshold.dtype, device=threshold.device)
    s = scale.unsqueeze(-1) if scale.dim() else scale
    z = (threshold.unsqueeze(-1) - q) / s
    # Probability space is cheap and exact away from the tails; the tails are redone in log space.
    p_in = ndtr(z) @ log_w.exp()
    tiny = torch.finfo(threshold.dtype).tiny
    log_in = p_in.clamp(min=tiny).log()
    log_out = (1.0 - p_in).clamp(min=tiny).log()
    tail = (p_in < _TAIL) | (p_in > 1.0 - _TAIL)
    if bool(tail.any()):
        idx = tail.nonzero().squeeze(-1)
        zt = z[idx]
        log_in = log_in.index_put((idx,), torch.logsumexp(log_w + log_ndtr(zt), dim=-1))
        log_out = log_out.index_put((idx,), torch.logsumexp(log_w + log_ndtr(-zt), dim=-1))
    return log_in, log_out


def _hermite_expectation(threshold: Tensor, scale: Tensor, dim: int, nodes: int) -> tuple[Tensor, Tensor]:
    zh, log_wh = (torch.as_tensor(a, dtype=threshold.dtype, device=threshold.device) for a in _hermite_rule(nodes))
    s = scale.unsqueeze(-1) if scale.dim() else scale
    # P = P(q + scale * Z <= threshold) = E_Z F_chi2(threshold - scale * Z)
    log_f, log_1mf = _Chi2LogCdf.apply(threshold.unsqueeze(-1) - s * zh, float(dim))
    return torch.logsumexp(log_wh + log_f, dim=-1), torch.logsumexp(log_wh + log_1mf, dim=-1)


class ContinuousIntervention:
    """Intervention model for diagonal Gaussian ``pi_H`` (policy) and ``pi_hat_R`` (mental model)."""

    def __init__(self, form: ContinuousForm | str = ContinuousForm.EXACT, nodes: int = 32) -> None:
        self.form = ContinuousForm(form)
        self.nodes = nodes

    def log_probs(
        self,
        mu: Tensor,
        std_h: Tensor,
        m: Tensor,
        std_r: Tensor,
        cost: Tensor,
        sigma: Tensor,
        human_action: Tensor | None = None,
    ) -> InterventionLogProbs:
        """``P(I|s)`` (eq. 1) and, given human actions, ``log p(a_H | s, I=1)``."""
        dim = mu.shape[-1]
        spread = gaussian_spread(mu, std_h, m, std_r)
        # Phi((1/2 (D - q) - c) / sigma) = Phi(((D - 2c) - q) / (2 sigma))
        log_p_int, log_p_no = chi2_probit_expectation(spread - 2.0 * cost, 2.0 * sigma, dim, self.nodes)
        log_p_action = None
        if human_action is not None:
            a = torch.nan_to_num(human_action)
            if self.form is ContinuousForm.EXACT:
                q = ((a - mu) / std_h).square().sum(-1)
                log_pi = diag_gaussian_log_prob(a, mu, std_h)
                log_p_action = log_pi + log_ndtr((0.5 * (spread - q) - cost) / sigma) - log_p_int
            else:
                p = log_p_int.exp().unsqueeze(-1)
                tiny = torch.finfo(mu.dtype).tiny
                log_p_action = diag_gaussian_log_prob(a, p * mu, (p * std_h).clamp(min=tiny))
        return InterventionLogProbs(log_p_int, log_p_no, log_p_action)
