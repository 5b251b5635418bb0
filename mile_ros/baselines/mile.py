"""MILE itself, behind the baselines' interface: the core's ``fit_mile`` started from the initial policy.

The mental model starts as a copy of the initial policy (the robot the human has been watching);
demonstrations, when given, are added as intervened steps like for every other method; the prior
(the initial policy's own demonstrations) adds its log-likelihood under the policy. Its config is
the core's :class:`~mile_ros.learning.MileConfig` (the project's chosen MILE; ``MileConfig.paper()``
the authors').
"""

from __future__ import annotations

from collections.abc import Callable

from mile_ros.learning import InterventionDataset, MileCheckpoint, MileConfig, RolloutSelection, fit_mile

from .common import merge_demos, mile_start

__all__ = ["MileConfig", "train"]

NAME = "mile"
# How the benchmark treats it (mile_ros.baselines: gets_demos, train, check_selection).
GETS_DEMOS = False  # the demonstration ablation runs MILE once, without
TAKES_PRIOR = True  # trains on the prior (D0) when given one
EPOCH_SELECTION = True  # rollout selection may pick among its epochs
CONFIG = MileConfig


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: MileConfig | None = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    config = config or MileConfig()
    data = merge_demos(dataset, demos)
    start = mile_start(init, NAME, config.cost, config.sigma)
    result = fit_mile(data, config, init=start, prior=prior, should_stop=should_stop, selection=selection)
    return result.checkpoint(trainer=NAME)
