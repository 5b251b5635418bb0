"""MILE itself, behind the baselines' interface: the core's ``fit_mile`` started from the initial policy.

The mental model starts as a copy of the initial policy (the robot the human has been watching);
demonstrations, when given, are added as intervened steps like for every other method.
"""

from __future__ import annotations

from mile_ros.learning import InterventionDataset, MileCheckpoint, MileConfig, fit_mile

from .common import merge_demos

__all__ = ["MileConfig", "train"]


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: MileConfig | None = None,
    demos: InterventionDataset | None = None,
) -> MileCheckpoint:
    config = config or MileConfig()
    data = merge_demos(dataset, demos)
    # The initial policy's mental model (if it has one) belongs to another robot; start from the policy.
    start = MileCheckpoint(init.spec, init.policy, None, config.cost, config.sigma)
    result = fit_mile(data, config, init=start)
    return result.checkpoint(trainer="mile")
