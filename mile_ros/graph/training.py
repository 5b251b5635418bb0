"""One MILE update from recorded bags: build the dataset, fit, write a new checkpoint atomically."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mile_ros.learning import DatasetError, InterventionDataset, MileConfig, fit_mile, load_checkpoint

from .bag_dataset import BuildReport, build_dataset, find_bags

__all__ = ["TrainingError", "TrainingOutcome", "train_from_bags"]


class TrainingError(RuntimeError):
    """Nothing to train on, or a checkpoint that would overwrite an existing file."""


@dataclass
class TrainingOutcome:
    checkpoint: Path
    report: BuildReport
    rows: int
    intervention_rate: float
    best_epoch: int
    seconds: float


def train_from_bags(
    bags_root: str | os.PathLike,
    init_checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    config: MileConfig | None = None,
    threads: int | None = None,
    prior: str | os.PathLike | None = None,
) -> TrainingOutcome:
    """Fit MILE on every training-mode episode under ``bags_root``, starting from ``init_checkpoint``.

    ``out`` must not exist: a run's checkpoints are never overwritten. ``prior``: an
    :class:`InterventionDataset` file (``.npz``) of the demonstrations the initial policy was
    cloned from, whose likelihood under the policy joins the loss (``MileConfig.lambda_prior``).
    """
    started = time.perf_counter()
    out = Path(out)
    if out.exists():
        raise TrainingError(f"{out} exists already; refusing to overwrite it")
    init = load_checkpoint(init_checkpoint)
    prior_data = _load_prior(prior, init.spec) if prior else None
    report = build_dataset(find_bags(bags_root), spec=init.spec)
    if report.dataset is None or len(report.dataset) == 0:
        raise TrainingError(f"no usable step in the bags under {bags_root}: {report.summary()}")
    if threads:
        torch.set_num_threads(threads)
    result = fit_mile(report.dataset, config or MileConfig(), init=init, prior=prior_data)
    ds = report.dataset
    ckpt = result.checkpoint(
        source_checkpoint=str(init_checkpoint),
        bags=[str(p) for p in report.used],
        skipped_bags=[[str(p), why] for p, why in report.skipped],
        rows=len(ds),
        intervention_rate=ds.intervention_rate,
        prior=str(prior) if prior_data is not None else None,
        prior_rows=len(prior_data) if prior_data is not None else 0,
    )
    ckpt.save(out)
    return TrainingOutcome(
        out, report, len(ds), ds.intervention_rate, result.loop.best_epoch, time.perf_counter() - started
    )


def _load_prior(path: str | os.PathLike, spec) -> InterventionDataset:
    try:
        data = InterventionDataset.load(path)
    except (OSError, ValueError, KeyError, DatasetError) as exc:
        raise TrainingError(f"cannot read the prior {path}: {exc}") from exc
    mismatch = spec.describe_mismatch(data.spec)
    if mismatch:
        raise TrainingError(f"the prior {path} does not fit the initial policy: {mismatch}")
    return data
