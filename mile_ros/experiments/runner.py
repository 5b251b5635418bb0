"""The benchmark driver: cells over a process pool, a resumable CSV, progress on the terminal.

Phase 1 prepares each task (initial policy, evaluations) and each task x seed (simulated human),
cached under ``OUT/cache``. Phase 2 runs the cells; each keeps its intervention record under
``OUT/records`` (for ``mile-ros replay``). A cell's rows are appended to
``OUT/<experiment>.csv`` only when the whole cell is done, so an interrupted run loses at most the
cells in flight, and a rerun with the same ``--out`` skips the cells already in the CSV.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .backends import Pool, make_pool
from .cells import Cell, cell_config, run_cell
from .presets import ExperimentPreset, get_preset, parse_method
from .tasks import HumanSetup, TaskSetup, check_human_options, prepare_human, prepare_task

__all__ = ["EXPERIMENTS", "BenchmarkPlan", "completed_keys", "plan_cells", "run_benchmark"]

EXPERIMENTS = ("single", "iterative", "demos", "prediction")


@dataclass
class BenchmarkPlan:
    experiment: str
    tasks: Sequence[str]
    methods: Sequence[str]
    seeds: Sequence[int]
    iterations: int
    episodes: int
    demos: Sequence[int] = (0,)
    preset: str = "quick"
    refit_mental: bool = False
    train_from: str = "initial"
    human: dict[str, Any] = field(default_factory=dict)  # overrides of the presets' simulated human
    select_rollouts: int = 0  # the authors' model selection by rollouts: episodes per candidate (0: off)
    select_every: int = 50  # epochs between candidates
    belief: str = "tracking"  # the simulated human's belief: tracking or frozen (see Cell)


TRAIN_FROM = ("initial", "previous")
BELIEFS = ("tracking", "frozen")
# Runs stored before a setting existed used what the code did then (continued training, the presets' human).
_SETTINGS_ADDED_LATER = {
    "train_from": "previous",
    "human": {},
    "select_rollouts": 0,
    "select_every": 50,
    "belief": "frozen",
}


def plan_cells(plan: BenchmarkPlan) -> list[Cell]:
    """Every cell of the plan, in a stable order (tasks, then seeds, then methods)."""
    if plan.experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {plan.experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    if plan.train_from not in TRAIN_FROM:
        raise ValueError(f"unknown train_from {plan.train_from!r}; choose from {', '.join(TRAIN_FROM)}")
    check_human_options(plan.human)
    iterations = 1 if plan.experiment == "single" else plan.iterations
    if plan.experiment == "prediction" and iterations < 2:
        raise ValueError("the prediction experiment needs at least 2 iterations (it predicts iteration k from < k)")
    common = {"iterations": iterations, "episodes": plan.episodes}
    if plan.belief not in BELIEFS:
        raise ValueError(f"unknown belief {plan.belief!r}; choose from {', '.join(BELIEFS)}")
    common |= {"refit_mental": plan.refit_mental, "train_from": plan.train_from, "belief": plan.belief}
    common |= _check_selection(plan)
    _check_methods(plan, iterations)
    # The prediction experiment scores MILE's intervention model (its rivals are fit inside the cell),
    # so it runs the MILE variants among the methods and ignores the rest.
    predictors = [m for m in plan.methods if parse_method(m)[0] == "mile"]
    if plan.experiment == "prediction" and not predictors:
        raise ValueError("the prediction experiment fits MILE's intervention model: name mile or mile@... as a method")
    cells = []
    for task in plan.tasks:
        for seed in plan.seeds:
            if plan.experiment == "prediction":
                # it never evaluates, so its human keeps the initial policy's belief
                cells += [Cell("prediction", task, m, seed, **{**common, "belief": "frozen"}) for m in predictors]
                continue
            for method in plan.methods:
                # the ablation gives demonstrations to the baselines only; MILE runs once, without
                counts = plan.demos if plan.experiment == "demos" and _gets_demos(method) else [0]
                cells += [Cell(plan.experiment, task, method, seed, demos=n, **common) for n in counts]
    return cells


def _gets_demos(method: str) -> bool:
    from mile_ros import baselines

    return baselines.gets_demos(parse_method(method)[0])


def _check_methods(plan: BenchmarkPlan, iterations: int) -> None:
    """Resolve every method's settings on every task now, as the cells will (:func:`cell_config`), so
    that a typo in a method's options or a task preset fails the plan, not every cell."""
    preset = get_preset(plan.preset)
    for method in plan.methods:
        for task in plan.tasks:
            cell_config(method, task, iterations, preset)


def _check_selection(plan: BenchmarkPlan) -> dict[str, int]:
    """The cells' rollout-selection settings; refuses what it cannot apply."""
    if plan.select_rollouts < 0 or plan.select_every < 1:
        raise ValueError(
            f"rollout selection needs episodes >= 0 and every >= 1 epochs,"
            f" got {plan.select_rollouts} and {plan.select_every}"
        )
    if plan.select_rollouts:
        if plan.experiment == "prediction":
            raise ValueError("the prediction experiment scores likelihoods: run it without rollout selection")
        from mile_ros import baselines

        for method in plan.methods:
            baselines.check_selection(parse_method(method)[0])
    return {"select_rollouts": plan.select_rollouts, "select_every": plan.select_every}


def check_settings(out: Path, plan: BenchmarkPlan) -> None:
    """Refuse to resume a CSV made with other settings (its cells would not be comparable).

    The settings that change what a cell measures without being part of its key are stored in
    ``OUT/<experiment>.settings.json`` by the first run.
    """
    path = Path(out) / f"{plan.experiment}.settings.json"
    settings = {
        "iterations": 1 if plan.experiment == "single" else plan.iterations,
        "episodes": plan.episodes,
        "preset": plan.preset,
        "refit_mental": plan.refit_mental,
        "train_from": plan.train_from,
        "human": plan.human,
        "select_rollouts": plan.select_rollouts,
        "select_every": plan.select_every,
        "belief": plan.belief,
    }
    if path.is_file():
        stored = json.loads(path.read_text())
        stored = {**_SETTINGS_ADDED_LATER, **stored}
        diff = [f"{k} {stored.get(k)!r} (now {v!r})" for k, v in settings.items() if stored.get(k) != v]
        if diff:
            raise ValueError(
                f"{path.parent / (plan.experiment + '.csv')} was made with "
                + ", ".join(diff)
                + "; use another --out, or the same settings to resume"
            )
    else:
        path.write_text(json.dumps(settings, indent=1))


def completed_keys(csv_path: Path) -> set[tuple]:
    """Keys of the cells whose rows are already in the CSV."""
    if not csv_path.is_file():
        return set()
    with csv_path.open(newline="") as f:
        return {(r["experiment"], r["task"], r["method"], r["seed"], r["demos"]) for r in csv.DictReader(f)}


def append_rows(csv_path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows (the header is written with the first ones; later rows use its columns)."""
    if not rows:
        return
    exists = csv_path.is_file() and csv_path.stat().st_size > 0
    if exists:
        with csv_path.open(newline="") as f:
            columns = next(csv.reader(f))
    else:
        columns = list(rows[0])
        for row in rows[1:]:
            columns += [k for k in row if k not in columns]
    with csv_path.open("a", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        if not exists:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()


def _task_job(task: str, preset: ExperimentPreset, cache: Path) -> TaskSetup:
    import torch

    torch.set_num_threads(1)
    return prepare_task(task, preset, cache)


def _human_job(task: str, seed: int, preset: ExperimentPreset, cache: Path, options: dict) -> HumanSetup:
    import torch

    torch.set_num_threads(1)
    return prepare_human(task, seed, preset, cache, options)


def _map(pool: Pool | None, fn: Callable, jobs: Iterable[tuple]) -> Iterable[tuple[tuple, Any]]:
    """Run jobs in the pool (or here), yielding (job, result) as each finishes."""
    jobs = list(jobs)
    if pool is None:
        for job in jobs:
            yield job, fn(*job)
        return
    futures: dict[Future, tuple] = {pool.submit(fn, *job): job for job in jobs}
    while futures:
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        for fut in done:
            yield futures.pop(fut), fut.result()


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_benchmark(
    plan: BenchmarkPlan,
    out: Path,
    workers: int = 2,
    log: TextIO = sys.stderr,
    backend: str = "process",
    address: str | None = None,
) -> Path:
    """Run (or resume) the plan; returns the CSV path. Reports progress to ``log``.

    ``backend``: ``process`` (a pool of ``workers`` processes here) or ``ray`` (the cluster at
    ``address``, :mod:`mile_ros.experiments.backends`); the CSV, resume and records are the same.
    """
    preset = get_preset(plan.preset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    csv_path = out / f"{plan.experiment}.csv"
    cells = plan_cells(plan)
    check_settings(out, plan)
    done = completed_keys(csv_path)
    todo = [c for c in cells if c.key not in done]
    print(f"{plan.experiment}: {len(cells)} cells, {len(cells) - len(todo)} already in {csv_path}", file=log)
    if not todo:
        return csv_path
    started = time.perf_counter()
    pool = make_pool(backend, workers, address, out)
    try:
        tasks: dict[str, TaskSetup] = {}
        for (task, *_), setup in _map(pool, _task_job, [(t, preset, cache) for t in sorted({c.task for c in todo})]):
            tasks[task] = setup
            print(
                f"  {task}: initial policy success {setup.init_success:.2f} (return {setup.init_return:.1f}),"
                f" expert {setup.expert_success:.2f} (return {setup.expert_return:.1f})"
                f" [{_fmt(setup.seconds)}]",
                file=log,
            )
        humans: dict[tuple[str, int], HumanSetup] = {}
        pairs = sorted({(c.task, c.seed) for c in todo})
        human_jobs = [(t, s, preset, cache, plan.human) for t, s in pairs]
        for (task, seed, *_), setup in _map(pool, _human_job, human_jobs):
            humans[(task, seed)] = setup
            changed = "".join(f", {k} {v}" for k, v in setup.options.items() if k != "sigma")
            print(
                f"  {task} seed {seed}: simulated human cost {setup.cost:.3g}, probit scale {setup.sigma:.3g}"
                f"{changed}; belief's held-out error (MSE) {setup.mental_heldout_mse:.3g} [{_fmt(setup.seconds)}]",
                file=log,
            )
        jobs = [(c, tasks[c.task], humans[(c.task, c.seed)], preset, out / "records") for c in todo]
        cell_started = time.perf_counter()
        for i, ((cell, *_), rows) in enumerate(_map(pool, run_cell, jobs), 1):
            append_rows(csv_path, rows)
            elapsed = time.perf_counter() - cell_started
            eta = elapsed / i * (len(todo) - i)
            print(
                f"[{i}/{len(todo)}] {_describe(cell, rows)} | elapsed {_fmt(elapsed)}, ETA {_fmt(eta)}",
                file=log,
            )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    print(f"done in {_fmt(time.perf_counter() - started)}; rows in {csv_path}", file=log)
    return csv_path


def _describe(cell: Cell, rows: list[dict[str, Any]]) -> str:
    name = f"{cell.task} {cell.method} seed {cell.seed}" + (f" demos {cell.demos}" if cell.demos else "")
    if not rows:
        return name + ": no rows"
    if rows[-1].get("error"):
        return f"{name}: FAILED at iteration {rows[-1]['iteration']}: {rows[-1]['error']}"
    if cell.experiment == "prediction":
        last = [r for r in rows if r["iteration"] == rows[-1]["iteration"]]
        scores = ", ".join(f"{r['predictor']} AUC {r['auc']:.2f}" for r in last)
        return f"{name}: {scores} [{_fmt(rows[-1]['cell_s'])}]"
    last = rows[-1]
    sim = sum(r["sim_s"] for r in rows)
    train = sum(r["train_s"] for r in rows)
    ev = sum(r["eval_s"] for r in rows)
    success = last["success_rate"]
    return (
        f"{name}: success {success:.2f} after {last['iteration']} it."
        f" ({last['intervened_steps']} intervened steps)"
        f" [total {_fmt(last['cell_s'])}: sim {sim:.0f} s, train {train:.0f} s, eval {ev:.0f} s]"
        + ("" if math.isfinite(success) else " (no evaluation)")
    )
