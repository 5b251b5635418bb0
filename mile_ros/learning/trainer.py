"""The MILE update: fit policy and mental model jointly to every recorded step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .checkpoint import MileCheckpoint
from .dataset import InterventionDataset
from .intervention import ContinuousForm, DiscreteForm
from .loop import LoopConfig, LoopResult, RolloutSelection, train_loop
from .model import MileModel
from .networks import STD_MODES, build_policy, load_policy_weights
from .prior import PriorTerm, joint_rows
from .spec import Spec

__all__ = ["FitStart", "MileConfig", "MileResult", "build_model", "calibrate_cost", "fit_mile", "prepare_fit"]


@dataclass
class MileConfig(LoopConfig):
    """MILE's settings. The defaults are the project's chosen MILE (docs/learning.md, "The defaults"):
    one std per action dimension, c started at the record's own intervention rate, c and sigma fitted
    by maximum likelihood, the mental model anchored to the robot's actions. :meth:`paper` gives the
    authors' settings instead (docs/mile-model.md)."""

    hidden: tuple[int, ...] = (256, 256)
    # Fixed epochs, no held-out selection: on a few recorded episodes held-out selection keeps the
    # initial policy, as the fitted stds are overconfident off the training states (docs/results.md).
    select_best: bool = False
    mental_hidden: tuple[int, ...] | None = None  # None: same as hidden
    # Gaussian std of both networks: per state ("state", the paper's) or one per action dimension
    # ("shared": it cannot collapse on some states and blow up on others).
    policy_std: str = "shared"
    # A shared std's step: the networks' ("network": it stays near the initial policy's within an
    # update) or the scalars' ("scalar": scalar_lr, it reaches its maximum-likelihood value).
    std_step: str = "network"
    lambda_int: float = 1.0
    lambda_policy: float = 1.0
    # Anchor pi_hat_R to the robot's recorded actions (not in the paper, whose loss has 0): the
    # learner's mental model then follows the robot the human is watching.
    lambda_mental: float = 1.0
    # Weight of the prior's log-likelihood under pi_H (the demonstrations the initial policy was
    # cloned from, when the caller gives them; 1 = their exact likelihood term).
    lambda_prior: float = 1.0
    prior_trains_std: bool = True  # False: the prior moves the policy's mean only (see PriorTerm.nll_sum)
    # Keep pi_hat_R at the initial checkpoint's: the human's belief formed on the initial policy and
    # never updated (the simulated human's, as the authors fixed it). Needs ``init``.
    freeze_mental: bool = False
    # Where c and sigma start; with cost_from_rate c starts where the predicted rate is the record's,
    # and learn_cost / learn_sigma fit them, so these are only starting points.
    cost: float = 5.0
    sigma: float = 5.0
    # Before training, set c so that the starting model's mean P(I=1|s) over the record equals the
    # record's own intervention rate: c in the units of the learner's value gap, not a copied constant.
    cost_from_rate: bool = True
    learn_cost: bool = True
    learn_sigma: bool = True
    scalar_lr: float = 1e-2  # Adam step for learned cost/sigma (log scale): ~1% per step
    discrete_form: str = DiscreteForm.PER_ACTION.value
    continuous_form: str = ContinuousForm.EXACT.value
    quadrature_nodes: int = 32
    val_fraction: float = 0.0  # episodes held out: scored every epoch, used only with select_best
    padding: str = "repeat"
    refit_normalizer: bool = False  # when starting from a checkpoint, keep its normalisation

    @classmethod
    def paper(cls, cost: float = 60.0, sigma: float = 75.0, **overrides: Any) -> MileConfig:
        """The authors' MILE (docs/mile-model.md): a std per state, c and sigma fixed at their values
        for the task (drawer-open's by default; the task presets hold the others), no anchor."""
        base = cls(
            policy_std="state",
            lambda_mental=0.0,
            cost=cost,
            sigma=sigma,
            cost_from_rate=False,
            learn_cost=False,
            learn_sigma=False,
        )
        return replace(base, **overrides)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["mental_hidden"] = list(self.mental_hidden) if self.mental_hidden else None
        return d


@dataclass
class MileResult:
    model: MileModel
    spec: Spec
    config: MileConfig
    loop: LoopResult
    train_rows: int = 0
    val_rows: int = 0
    meta: dict = field(default_factory=dict)

    def checkpoint(self, **meta) -> MileCheckpoint:
        info = {
            "trainer": "mile",
            "config": self.config.to_dict(),
            "best_epoch": self.loop.best_epoch,
            "best_val_nll": self.loop.best_val if np.isfinite(self.loop.best_val) else None,
            "epochs_run": len(self.loop.history),
            "train_rows": self.train_rows,
            "val_rows": self.val_rows,
            **self.meta,
            **meta,
        }
        return MileCheckpoint.from_model(self.spec, self.model, self.config.padding, info)


def build_model(
    spec: Spec, config: MileConfig, init: MileCheckpoint | None = None, obs: Tensor | None = None
) -> MileModel:
    """A fresh MileModel, or one that starts from ``init`` (its policy, and its mental model or a copy).

    Both networks take ``config.policy_std``; converted from an initial network with the other kind
    of std, a shared std starts at that network's mean log-std over ``obs`` (the training states).
    """
    torch.manual_seed(config.seed)
    std = config.policy_std
    if init is not None:
        mismatch = spec.describe_mismatch(init.spec)
        if mismatch:
            raise ValueError(f"initial checkpoint does not fit the data: {mismatch}")
        policy = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, init.policy.hidden, std)
        load_policy_weights(policy, init.policy, obs)
        source = init.mental if init.mental is not None else init.policy
        mental_hidden = config.mental_hidden or source.hidden
        mental = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, mental_hidden, std)
        if tuple(mental_hidden) == tuple(source.hidden):
            load_policy_weights(mental, source, obs)
    else:
        policy = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, config.hidden, std)
        mental = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, config.mental_hidden or config.hidden, std)
    return MileModel(
        policy,
        mental,
        config.cost,
        config.sigma,
        config.learn_cost,
        config.learn_sigma,
        config.discrete_form,
        config.continuous_form,
        config.quadrature_nodes,
    )


def record_tensors(ds: InterventionDataset, padding: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A record as tensors: stacked observations, intervention flags, human and robot actions."""
    obs = torch.from_numpy(ds.stacked_observations(padding))
    flag = torch.from_numpy(ds.intervention)
    if ds.spec.discrete:
        human = torch.from_numpy(np.where(ds.intervention, ds.human_action, 0)).long()
        robot = torch.from_numpy(ds.robot_action).long()
    else:
        human = torch.from_numpy(np.nan_to_num(ds.human_action)).float()
        robot = torch.from_numpy(ds.robot_action).float()
    return obs, flag, human, robot


@dataclass
class FitStart:
    """What a MILE-family fit starts from (:func:`prepare_fit`): the record split by episode, its
    training part as tensors, and the model ready to train."""

    spec: Spec
    train: InterventionDataset
    val: InterventionDataset
    obs: Tensor
    flag: Tensor
    human: Tensor
    robot: Tensor
    model: MileModel
    lambda_mental: float  # the anchor's weight: 0 while the mental model is frozen


def prepare_fit(
    dataset: InterventionDataset,
    config: MileConfig,
    init: MileCheckpoint | None = None,
    model: MileModel | None = None,
) -> FitStart:
    """The set-up :func:`fit_mile` and the temporal fit share: check ``config``, split ``dataset``
    by episode, build the model (or take ``model``) from ``init``, freeze the mental model if asked
    and fit the normalisers on the training states (unless a checkpoint's are kept)."""
    if len(dataset) == 0:
        raise ValueError("the dataset is empty: record at least one episode before training")
    if config.freeze_mental and init is None and model is None:
        raise ValueError("freeze_mental keeps the initial checkpoint's mental model: give an initial checkpoint")
    if config.policy_std not in STD_MODES:
        raise ValueError(f"policy_std must be one of {STD_MODES}, got {config.policy_std!r}")
    if config.std_step not in ("network", "scalar"):
        raise ValueError(f"std_step must be network or scalar, got {config.std_step!r}")
    spec = dataset.spec
    train, val = dataset.split_by_episode(config.val_fraction, config.seed)
    obs, flag, human, robot = record_tensors(train, config.padding)
    model = model or build_model(spec, config, init, obs)
    model.mental.requires_grad_(not config.freeze_mental)
    if init is None or config.refit_normalizer:
        model.policy.normalizer.fit(obs)
        if not config.freeze_mental:
            model.mental.normalizer.fit(obs)
    lambda_mental = 0.0 if config.freeze_mental else config.lambda_mental
    return FitStart(spec, train, val, obs, flag, human, robot, model, lambda_mental)


def fit_mile(
    dataset: InterventionDataset,
    config: MileConfig | None = None,
    init: MileCheckpoint | None = None,
    model: MileModel | None = None,
    prior: InterventionDataset | None = None,
    should_stop: Callable[[], bool] | None = None,
    selection: RolloutSelection | None = None,
) -> MileResult:
    """Fit MILE to ``dataset`` with ``config`` (default: the project's chosen :class:`MileConfig`).

    ``prior``: demonstrations of the human (the initial policy's), whose log-likelihood under the
    policy joins the loss with weight ``config.lambda_prior`` (no intervention term: they were not
    interventions). ``should_stop``: checked before every minibatch; ``selection``: choose the
    weights by rollouts (see :func:`train_loop`).
    """
    config = config or MileConfig()
    start = prepare_fit(dataset, config, init, model)
    spec, train, val, model, lambda_mental = start.spec, start.train, start.val, start.model, start.lambda_mental
    obs, flag, human, robot = start.obs, start.flag, start.human, start.robot

    if config.cost_from_rate:
        rate = float(flag.float().mean())
        if 0.0 < rate < 1.0:
            calibrate_cost(model, obs, rate)
    prior_term = PriorTerm.of(prior, len(train), config.lambda_prior, config.padding)

    def record_loss(idx: Tensor) -> Tensor:
        return model.losses(
            obs[idx], flag[idx], human[idx], config.lambda_int, config.lambda_policy, robot[idx], lambda_mental
        ).total

    def batch_loss(idx: Tensor) -> Tensor:
        if prior_term is None:
            return record_loss(idx)
        rec, pri = prior_term.split(idx)
        total = record_loss(rec) * len(rec) if len(rec) else obs.new_zeros(())
        return (total + prior_term.nll_sum(model.policy, pri, config.prior_trains_std)) / len(idx)

    val_loss = None
    if len(val):
        v_obs, v_flag, v_human, _ = record_tensors(val, config.padding)

        def val_loss() -> float:  # the record's NLL per step, whatever the training weights
            return float(model.losses(v_obs, v_flag, v_human).total)

    loop = train_loop(
        [model],
        batch_loss,
        joint_rows(len(train), prior_term),
        config,
        val_loss,
        "MILE",
        model.scalar_parameters(with_stds=config.std_step == "scalar"),
        config.scalar_lr,
        should_stop,
        selection,
    )
    return MileResult(model, spec, config, loop, len(train), len(val))


@torch.no_grad()
def calibrate_cost(
    model: MileModel, obs: Tensor | np.ndarray, target_rate: float, lo: float = 0.0, hi: float | None = None
) -> float:
    """Set the cost so that the mean ``P(I=1|s)`` over ``obs`` equals ``target_rate`` (bisection).

    ``P(I=1|s)`` falls monotonically as the cost rises, so the answer is unique; the model's cost is
    updated in place and returned. If even a zero cost predicts fewer interventions, 0 is returned.
    """
    if not 0.0 < target_rate < 1.0:
        raise ValueError("target_rate must lie in (0, 1)")
    obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32)

    def rate(c: float) -> float:
        model.set_cost(c)
        return float(model.intervention_probability(obs).mean())

    if rate(lo) <= target_rate:
        return lo
    hi = hi if hi is not None else max(1.0, model.cost_value())
    while rate(hi) > target_rate:
        hi *= 2.0
        if hi > 1e9:
            raise RuntimeError("could not bring the intervention rate down to the target")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rate(mid) > target_rate else (lo, mid)
    model.set_cost(hi)
    return hi
