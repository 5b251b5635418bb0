"""What every baseline shares: cloning the initial policy, demonstrations, sample modes, hyperparameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mile_ros.learning import (
    BCConfig,
    InterventionDataset,
    MileCheckpoint,
    PolicyNet,
    RolloutSelection,
    build_policy,
    demonstrated_actions,
    fit_bc,
)

__all__ = [
    "DEMO_EPISODE_OFFSET",
    "PRIOR_EPISODE_OFFSET",
    "BaselineConfig",
    "clone_policy",
    "human_or_robot_actions",
    "merge_demos",
    "merge_prior",
    "weight_prior",
    "weighted_bc",
]

# Demonstration episodes get ids far above any recorded episode so that the two never collide;
# the initial policy's own demonstrations (the prior, D0) above those.
DEMO_EPISODE_OFFSET = 1_000_000
PRIOR_EPISODE_OFFSET = 2_000_000


@dataclass
class BaselineConfig(BCConfig):
    """Weighted-BC settings shared by the imitation baselines (a BCConfig plus bookkeeping).

    The defaults are the project's for iterative training on any Metaworld task (the paper's
    appendix D, drawer-open's column); the task presets hold other tasks' values.
    """

    lr: float = 1e-4
    epochs: int = 300  # per update of iterative training (the task presets: 1000 for a single round)

    fit_normalizer: bool = False  # fine-tuning keeps the initial policy's input statistics
    select_best: bool = False  # the paper's fixed epochs on all episodes (see MileConfig)
    val_fraction: float = 0.0
    lambda_prior: float = 1.0  # weight of the prior's rows (the initial policy's demonstrations); 0 drops them
    extra: dict[str, Any] = field(default_factory=dict)


def clone_policy(init: MileCheckpoint) -> PolicyNet:
    """A fresh network with the initial policy's architecture, weights and normalisation."""
    spec = init.spec
    policy = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, init.policy.hidden)
    policy.load_state_dict(init.policy.state_dict())
    return policy


def mile_start(init: MileCheckpoint, trainer: str, cost: float, sigma: float) -> MileCheckpoint:
    """Where a MILE-family fit starts: ``init`` itself when it is this trainer's own previous fit
    (iterative training keeps its mental model); any other learner's mental model is not this one's,
    so the mental model starts as a copy of the policy."""
    if init.mental is not None and init.meta.get("trainer") == trainer:
        return init
    return MileCheckpoint(init.spec, init.policy, None, cost, sigma)


def merge_demos(
    dataset: InterventionDataset, demos: InterventionDataset | None, offset: int = DEMO_EPISODE_OFFSET
) -> InterventionDataset:
    """``dataset`` plus expert demonstrations, every demo row treated as an intervention (I=1, a_H = expert).

    A demo dataset may store the expert's action as its robot action (a plain rollout of the expert)
    or as a human action; where the human action is missing the robot action is used. Demo episodes
    are renumbered from ``offset``.
    """
    if demos is None or len(demos) == 0:
        return dataset
    mismatch = dataset.spec.describe_mismatch(demos.spec)
    if mismatch:
        raise ValueError(f"demonstrations do not fit the dataset: {mismatch}")
    expert = demonstrated_actions(demos)
    episodes = demos.episode - demos.episode.min() + offset
    relabelled = InterventionDataset(
        demos.spec, demos.observation, expert, np.ones(len(demos), bool), expert, episodes, demos.step
    )
    return InterventionDataset.concatenate([dataset, relabelled])


def merge_prior(
    dataset: InterventionDataset, demos: InterventionDataset | None, prior: InterventionDataset | None
) -> InterventionDataset:
    """The weighted-BC methods' training set: the record, the demonstrations and the prior (D0).

    The prior is what the initial policy was cloned from; aggregating it with the interventions is
    DAgger's and HG-DAgger's own recipe (the aggregate starts as the demonstrations), and it keeps a
    fine-tuned policy from forgetting the behaviour it started with. Its rows are intervened rows
    numbered from :data:`PRIOR_EPISODE_OFFSET` (see :func:`weight_prior`).
    """
    return merge_demos(merge_demos(dataset, demos), prior, PRIOR_EPISODE_OFFSET)


def weight_prior(data: InterventionDataset, weights: np.ndarray, lambda_prior: float) -> np.ndarray:
    """``weights`` with the prior's rows (from :func:`merge_prior`) scaled by ``lambda_prior``."""
    if lambda_prior < 0:
        raise ValueError(f"lambda_prior must be >= 0, got {lambda_prior}")
    return np.where(data.episode >= PRIOR_EPISODE_OFFSET, weights * lambda_prior, weights).astype(np.float32)


def human_or_robot_actions(dataset: InterventionDataset) -> np.ndarray:
    """The executed action of every row: the human's where I=1, the robot's where I=0."""
    if dataset.spec.discrete:
        return np.where(dataset.intervention, dataset.human_action, dataset.robot_action)
    return np.where(dataset.intervention[:, None], dataset.human_action, dataset.robot_action)


def weighted_bc(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    actions: np.ndarray,
    weights: np.ndarray,
    config: BaselineConfig,
    desc: str,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[PolicyNet, dict[str, Any]]:
    """Fine-tune a clone of the initial policy by BC on rows with positive weight; returns policy and info."""
    keep = weights > 0
    policy = clone_policy(init)
    if not keep.any():  # nothing to learn from: the initial policy is the honest answer
        return policy, {
            "bc_rows": 0,
            "epochs_run": 0,
            "note": "no rows with positive weight; initial policy kept",
        }
    obs = dataset.stacked_observations()[keep]
    policy, loop = fit_bc(
        dataset.spec,
        obs,
        actions[keep],
        dataset.episode[keep],
        weights[keep],
        config,
        policy=policy,
        desc=desc,
        selection=selection,
        should_stop=should_stop,
    )
    info = {
        "bc_rows": int(keep.sum()),
        "epochs_run": len(loop.history),
        "best_epoch": loop.best_epoch,
        "best_val_nll": loop.best_val if np.isfinite(loop.best_val) else None,
    }
    return policy, info
