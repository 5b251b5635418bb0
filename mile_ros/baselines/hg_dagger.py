"""HG-DAgger (Kelly et al. 2019): aggregate every intervention segment and retrain by behaviour cloning.

Only the steps where the human held control carry a label; the robot's own steps are ignored.
The policy is fine-tuned from a clone of the common initial policy on the aggregate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mile_ros.learning import InterventionDataset, MileCheckpoint, RolloutSelection

from .common import BaselineConfig, merge_prior, weight_prior, weighted_bc

NAME = "hg_dagger"
# How the benchmark treats it (mile_ros.baselines: gets_demos, train, check_selection).
GETS_DEMOS = True  # expert demonstrations in the demonstration ablation
TAKES_PRIOR = True  # trains on the prior (D0) when given one
EPOCH_SELECTION = True  # rollout selection may pick among its epochs

__all__ = ["HGDaggerConfig", "train"]


@dataclass
class HGDaggerConfig(BaselineConfig):
    """HG-DAgger's settings: plain weighted BC (the shared ones)."""


CONFIG = HGDaggerConfig


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: HGDaggerConfig | None = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    config = config or HGDaggerConfig()
    data = merge_prior(dataset, demos, prior)
    weights = data.intervention.astype(np.float32)
    weights = weight_prior(data, weights, config.lambda_prior)
    policy, info = weighted_bc(
        data, init, data.human_action, weights, config, desc="HG-DAgger", selection=selection, should_stop=should_stop
    )
    return MileCheckpoint(data.spec, policy, meta={"trainer": "hg_dagger", **info})
