"""IWR, intervention-weighted regression (Mandlekar et al. 2020).

Behaviour cloning on every step, with the executed action as the label (the human's where I=1, the
robot's where I=0). The authors re-balance the two kinds of sample by their counts so that the
interventions and the robot's own steps each carry half of the total weight:
``w_int = N / (2 N_int)``, ``w_robot = N / (2 N_robot)``. Demonstrations count as interventions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mile_ros.learning import InterventionDataset, MileCheckpoint, RolloutSelection

from .common import BaselineConfig, human_or_robot_actions, merge_prior, weight_prior, weighted_bc

NAME = "iwr"
# How the benchmark treats it (mile_ros.baselines: gets_demos, train, check_selection).
GETS_DEMOS = True  # expert demonstrations in the demonstration ablation
TAKES_PRIOR = True  # trains on the prior (D0) when given one
EPOCH_SELECTION = True  # rollout selection may pick among its epochs

__all__ = ["IWRConfig", "count_balanced_weights", "train"]


@dataclass
class IWRConfig(BaselineConfig):
    intervention_share: float = 0.5  # fraction of the total weight carried by intervention samples


def count_balanced_weights(intervention: np.ndarray, share: float = 0.5) -> np.ndarray:
    """Per-row weights giving interventions ``share`` of the total weight (plain BC if one kind is absent)."""
    flag = np.asarray(intervention, bool)
    n, n_int = len(flag), int(flag.sum())
    n_robot = n - n_int
    if n_int == 0 or n_robot == 0:
        return np.ones(n, np.float32)
    return np.where(flag, share * n / n_int, (1.0 - share) * n / n_robot).astype(np.float32)


CONFIG = IWRConfig


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: IWRConfig | None = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    config = config or IWRConfig()
    data = merge_prior(dataset, demos, prior)
    weights = count_balanced_weights(data.intervention, config.intervention_share)
    weights = weight_prior(data, weights, config.lambda_prior)
    policy, info = weighted_bc(
        data,
        init,
        human_or_robot_actions(data),
        weights,
        config,
        desc="IWR",
        selection=selection,
        should_stop=should_stop,
    )
    return MileCheckpoint(data.spec, policy, meta={"trainer": "iwr", **info})
