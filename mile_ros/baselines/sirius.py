"""Sirius (Liu et al. 2023, "Robot Learning on the Job"): weighted BC by action mode.

Each step gets a mode: ``intervention`` (the human acts; demonstrations count here), ``pre-intervention``
(the robot's last ``preintervention_window`` steps before a takeover: the behaviour the human judged
bad, so it is down-weighted, by default dropped) and ``robot`` (the robot acted and the human let it).
As the authors describe, interventions are up-weighted to a fixed share of the total weight and the
remaining samples keep their natural ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mile_ros.learning import InterventionDataset, MileCheckpoint, RolloutSelection

from .common import BaselineConfig, human_or_robot_actions, merge_prior, weight_prior, weighted_bc

NAME = "sirius"
# How the benchmark treats it (mile_ros.baselines: gets_demos, train, check_selection).
GETS_DEMOS = True  # expert demonstrations in the demonstration ablation
TAKES_PRIOR = True  # trains on the prior (D0) when given one
EPOCH_SELECTION = True  # rollout selection may pick among its epochs

__all__ = [
    "INTERVENTION",
    "PRE_INTERVENTION",
    "ROBOT",
    "SiriusConfig",
    "action_modes",
    "sirius_weights",
    "train",
]

ROBOT, INTERVENTION, PRE_INTERVENTION = 0, 1, 2


@dataclass
class SiriusConfig(BaselineConfig):
    preintervention_window: int = 15  # robot steps before each takeover that count as pre-intervention
    preintervention_weight: float = 0.0  # relative to robot steps; 0 drops them
    intervention_share: float = 0.5  # fraction of the total weight carried by intervention samples


def action_modes(dataset: InterventionDataset, window: int) -> np.ndarray:
    """The mode of every row; rows must be grouped by episode and ordered by step (datasets are)."""
    flag = dataset.intervention
    mode = np.where(flag, INTERVENTION, ROBOT)
    new_episode = np.r_[True, dataset.episode[1:] != dataset.episode[:-1]]
    starts = np.flatnonzero(flag & (~np.r_[False, flag[:-1]] | new_episode))
    for s in starts:
        lo = s
        while lo > 0 and s - lo < window and dataset.episode[lo - 1] == dataset.episode[s] and not flag[lo - 1]:
            lo -= 1
        mode[lo:s] = PRE_INTERVENTION
    return mode


def sirius_weights(mode: np.ndarray, config: SiriusConfig) -> np.ndarray:
    """Interventions get ``intervention_share`` of the weight; robot and pre-intervention steps the rest."""
    n_int = int((mode == INTERVENTION).sum())
    base = np.where(mode == PRE_INTERVENTION, config.preintervention_weight, 1.0).astype(np.float64)
    base[mode == INTERVENTION] = 0.0
    rest = base.sum()
    if n_int == 0:
        return base.astype(np.float32)
    if rest == 0:
        return (mode == INTERVENTION).astype(np.float32)
    total = rest / (1.0 - config.intervention_share)
    weights = base
    weights[mode == INTERVENTION] = config.intervention_share * total / n_int
    return (weights * len(mode) / total).astype(np.float32)


CONFIG = SiriusConfig


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: SiriusConfig | None = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    config = config or SiriusConfig()
    data = merge_prior(dataset, demos, prior)
    mode = action_modes(data, config.preintervention_window)
    weights = weight_prior(data, sirius_weights(mode, config), config.lambda_prior)
    policy, info = weighted_bc(
        data,
        init,
        human_or_robot_actions(data),
        weights,
        config,
        desc="Sirius",
        selection=selection,
        should_stop=should_stop,
    )
    info["pre_intervention_rows"] = int((mode == PRE_INTERVENTION).sum())
    return MileCheckpoint(data.spec, policy, meta={"trainer": "sirius", **info})
