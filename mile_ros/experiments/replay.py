"""Retrain methods on a benchmark cell's saved record, iteration by iteration, and evaluate them.

Every method then learns from exactly the same steps (the record the cell's own method collected),
so a difference between methods, or between settings of one method, is the learner's alone. With
the cell's own method, seed and preset, the replay reproduces the cell's success figures exactly
(same data, same update seeds, same evaluation episodes). Each iteration retrains a clone of the
initial policy on the record's episodes up to that iteration, as the benchmark's default
``--train-from initial`` does. Leaving chosen episodes out asks what one episode did to a learner
(e.g. one long failing episode; see docs/results.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mile_ros.learning import InterventionDataset, MileCheckpoint
from mile_ros.seeds import EVAL_SEED
from mile_ros.sim import evaluate, make_env

from .cells import Cell, train_for_cell
from .diagnose import DIAGNOSIS_COLUMNS, diagnose
from .presets import ExperimentPreset
from .tasks import expert_demos

__all__ = ["diagnosis_table", "record_iterations", "replay_record", "replay_table"]


def record_iterations(record: InterventionDataset, episodes_per_iteration: int) -> int:
    """How many iterations a cell's record holds (its episode ids run from 0)."""
    if episodes_per_iteration < 1:
        raise ValueError("episodes_per_iteration must be at least 1")
    if len(record) == 0:
        raise ValueError("the record is empty")
    return int(record.episode.max()) // episodes_per_iteration + 1


def replay_record(
    record: InterventionDataset,
    task: str,
    init: MileCheckpoint,
    methods: Sequence[str],
    iterations: Sequence[int],
    preset: ExperimentPreset,
    seed: int,
    episodes_per_iteration: int = 1,
    demos: int = 0,
    without_episodes: Sequence[int] = (),
    prior: InterventionDataset | None = None,
    expert: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per method and iteration: success, return and training time on the record up to it.

    ``expert``: the scripted expert's action at every recorded state
    (:func:`mile_ros.experiments.diagnose.expert_actions`); given, each row also holds the
    diagnosis of the trained policy on its training steps, and a first row (method ``initial``,
    iteration 0) the initial policy's on the whole record.

    ``without_episodes``: episode ids (0-based, as in the record) left out of every training set;
    ``prior``: the initial policy's demonstrations (kept beside ``init.pt`` as ``init-demos.npz``:
    :func:`mile_ros.sim.initial_policy.demonstrations_path`).
    """
    torch.set_num_threads(1)  # as a benchmark cell: the same arithmetic, hence the same figures
    total = record_iterations(record, episodes_per_iteration)
    bad = [i for i in iterations if not 1 <= i <= total]
    if bad:
        raise ValueError(f"iterations {bad} are not in the record (it holds iterations 1..{total})")
    missing = sorted(set(without_episodes) - set(np.unique(record.episode).tolist()))
    if missing:
        raise ValueError(f"episodes {missing} are not in the record (its ids run 0..{int(record.episode.max())})")
    demo_data = None
    if demos:
        env = make_env(task, seed=seed)
        try:
            demo_data = expert_demos(task, demos, env)
        finally:
            env.close()
    rows: list[dict[str, Any]] = []
    if expert is not None:
        rows.append(
            {
                "method": "initial",
                "iteration": 0,
                "steps_total": len(record),
                "intervened_steps": int(record.intervention.sum()),
                **diagnose(init, record, expert),
            }
        )
    for it in iterations:
        keep = (record.episode < it * episodes_per_iteration) & ~np.isin(record.episode, list(without_episodes))
        data = record.select(np.flatnonzero(keep))
        for spec in methods:
            cell = Cell("replay", task, spec, seed, iterations=total, episodes=episodes_per_iteration, demos=demos)
            t = time.perf_counter()
            trained = train_for_cell(spec, data, init, cell, preset, it, demo_data, prior)
            train_s = time.perf_counter() - t
            result = evaluate(task, trained, preset.eval_episodes, seed=EVAL_SEED, workers=1)
            diagnosis = {} if expert is None else diagnose(trained, data, expert[keep])
            rows.append(
                {
                    **diagnosis,
                    "method": spec,
                    "iteration": it,
                    "steps_total": len(data),
                    "intervened_steps": int(data.intervention.sum()),
                    "success_rate": result.success_rate,
                    "success_se": result.success_se,
                    "mean_return": result.mean_return,
                    "train_s": train_s,
                }
            )
    return rows


def replay_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`replay_record`'s rows (and one of their diagnosis, where they have it)."""
    table = _success_table([r for r in rows if "success_rate" in r])
    if any("err_all" in r for r in rows):
        table += "\n" + diagnosis_table([r for r in rows if "err_all" in r])
    return table


def diagnosis_table(rows: list[dict[str, Any]]) -> str:
    """The diagnosis columns as a markdown table (errors are RMSE against the expert's action)."""
    head = ["method", "iteration", *DIAGNOSIS_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["method"]), str(r["iteration"])] + [f"{r[k]:.3g}" for k in DIAGNOSIS_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _success_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | iteration | steps | intervened | success | return | train (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['iteration']} | {r['steps_total']} | {r['intervened_steps']} |"
            f" {r['success_rate']:.2f} ± {r['success_se']:.2f} | {r['mean_return']:.1f} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"
