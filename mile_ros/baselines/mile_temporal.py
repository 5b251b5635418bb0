"""MILE with a temporal intervention model, behind the baselines' interface.

The same networks and settings as ``mile`` (its config extends :class:`~mile_ros.learning.MileConfig`),
but the record's likelihood follows takeovers over time: MILE's probit starts one, a learned number
of concerned checks may come first, and a hazard on the state and the takeover's length hands back
(:mod:`mile_ros.learning.temporal`, docs/learning.md "The temporal intervention model"). The
checkpoint is an ordinary MILE checkpoint (its policy gets evaluated, its ``P(I=1|s)`` is MILE's);
the hazard and the waiting mixture travel in ``meta["temporal"]``
(:meth:`~mile_ros.learning.temporal.TemporalModel.from_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mile_ros.learning import InterventionDataset, MileCheckpoint
from mile_ros.learning.temporal import TemporalConfig, fit_temporal

from .common import merge_demos, mile_start

__all__ = ["TemporalConfig", "train"]

NAME = "mile_temporal"
# How the benchmark treats it (mile_ros.baselines: gets_demos, train, check_selection).
GETS_DEMOS = False  # the demonstration ablation runs MILE once, without
TAKES_PRIOR = True  # trains on the prior (D0) when given one
EPOCH_SELECTION = True  # rollout selection may pick among its epochs
CONFIG = TemporalConfig


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: TemporalConfig | None = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    config = config or TemporalConfig()
    data = merge_demos(dataset, demos)
    start = mile_start(init, NAME, config.cost, config.sigma)
    result = fit_temporal(data, config, init=start, prior=prior, should_stop=should_stop, selection=selection)
    return result.checkpoint(data.spec, trainer=NAME)
