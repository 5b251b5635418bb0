"""Magnitudes of a trained continuous-action policy on the record it was trained on.

What ``mile-ros replay --diagnose`` prints beside success: where a learner goes wrong shows here
before it shows in rollouts. On the record's states: how far the policy's mean is from the scripted
expert's action (all steps, the human's steps, the robot's steps), how far outside the action bounds
the means go, the spread of the policy's std, and, for a checkpoint with an intervention model,
``P(I=1|s)``'s distribution and how well it predicts the recorded interventions (AUC, nats per step
over always predicting the record's own rate).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mile_ros.learning import InterventionDataset, MileCheckpoint
from mile_ros.sim import make_env
from mile_ros.sim.experts import make_expert

from .metrics import prediction_scores

__all__ = ["DIAGNOSIS_COLUMNS", "diagnose", "expert_actions"]

DIAGNOSIS_COLUMNS = (
    "err_all",
    "err_human",
    "err_robot",
    "out_of_bounds",
    "std_min",
    "std_median",
    "std_max",
    "p_int_median",
    "p_int_over_099",
    "auc",
    "nats_over_rate",
)


def expert_actions(task: str, record: InterventionDataset) -> np.ndarray:
    """The scripted expert's (noise-free) action at every recorded state."""
    env = make_env(task, seed=0)
    try:
        expert = make_expert(task, env)
        if expert.discrete:
            raise ValueError("the diagnosis measures continuous actions only")
        return np.stack([expert.act(frame) for frame in record.observation]).astype(np.float32)
    finally:
        env.close()


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a - b)))) if len(a) else math.nan


@torch.no_grad()
def diagnose(checkpoint: MileCheckpoint, record: InterventionDataset, expert: np.ndarray) -> dict[str, Any]:
    """:data:`DIAGNOSIS_COLUMNS` of ``checkpoint`` on ``record`` (``expert``: :func:`expert_actions`)."""
    if checkpoint.spec.discrete:
        raise ValueError("the diagnosis measures continuous actions only")
    obs = torch.from_numpy(record.stacked_observations(checkpoint.padding))
    mean, std = (t.numpy() for t in checkpoint.policy(obs))
    human = record.intervention.astype(bool)
    spec = checkpoint.spec
    out_of_bounds = math.nan
    if spec.action_low is not None and spec.action_high is not None:
        out_of_bounds = float(np.mean((mean < np.asarray(spec.action_low)) | (mean > np.asarray(spec.action_high))))
    row: dict[str, Any] = {
        "err_all": _rmse(mean, expert),
        "err_human": _rmse(mean[human], expert[human]),
        "err_robot": _rmse(mean[~human], expert[~human]),
        "out_of_bounds": out_of_bounds,
        "std_min": float(std.min()),
        "std_median": float(np.median(std)),
        "std_max": float(std.max()),
    }
    model = checkpoint.intervention_model()
    if model is None:
        return row | {k: math.nan for k in ("p_int_median", "p_int_over_099", "auc", "nats_over_rate")}
    p = model.intervention_probability(obs).numpy().astype(np.float64)
    scores = prediction_scores(p, human)
    rate = float(np.clip(human.mean(), 1e-6, 1 - 1e-6))
    constant = float(np.mean(np.where(human, math.log(rate), math.log1p(-rate))))
    return row | {
        "p_int_median": float(np.median(p)),
        "p_int_over_099": float(np.mean(p > 0.99)),
        "auc": scores["auc"],
        "nats_over_rate": scores["log_likelihood"] - constant,
    }
