"""Scores of intervention predictors: accuracy, balanced accuracy, AUC and log-likelihood."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["auc", "prediction_scores"]


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve of scores ``p`` (any monotone scale) against outcomes ``y``, by the
    rank (Mann-Whitney) statistic, ties counted half."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # average ranks over ties
    _, start, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def prediction_scores(probability: np.ndarray, intervened: np.ndarray, eps: float = 1e-6) -> dict[str, float]:
    """Scores of predicted ``P(I=1|s)`` against what happened (threshold 0.5 for the accuracies)."""
    p = np.clip(np.asarray(probability, dtype=np.float64), eps, 1.0 - eps)
    y = np.asarray(intervened, dtype=bool)
    if len(p) != len(y) or len(y) == 0:
        raise ValueError("need as many predictions as outcomes, and at least one")
    guess = p >= 0.5
    tpr = float(guess[y].mean()) if y.any() else math.nan
    tnr = float((~guess[~y]).mean()) if (~y).any() else math.nan
    return {
        "accuracy": float((guess == y).mean()),
        "balanced_accuracy": float(np.nanmean([tpr, tnr])),
        "auc": auc(p, y),
        "log_likelihood": float(np.mean(np.where(y, np.log(p), np.log1p(-p)))),
        "steps": len(y),
        "interventions": int(y.sum()),
    }
