"""The benchmark's two backends on the same cells: identical results, and what each costs per cell.

``mile-ros bench backends --address HOST:PORT`` (a running Ray cluster, e.g. a local
``ray start --head --num-cpus 2``) measures

1. dispatch: a job that does nothing, submitted and awaited one at a time (the first one includes
   starting the pool's workers), then a batch of them at once;
2. cells: the same plan (by default LunarLander, ``smoke`` preset, IWR, 4 seeds, one iteration) through
   the process pool and through Ray, both from the same prepared task and humans, with the wall
   time, the cells' own time and the overhead per cell: ``(wall - sum(cell_s) / 2) / cells`` for 2
   cells at a time (2 workers, 2 CPUs), and whether the CSVs (timings aside) and records are equal.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _noop(x: int) -> int:
    return x


def dispatch(backend: str, address: str | None, jobs: int) -> dict[str, float]:
    """Seconds for the first no-op job (workers start), then per job one at a time, then per job in a batch."""
    from mile_ros.experiments.backends import make_pool

    started = time.perf_counter()
    pool = make_pool(backend, 2, address)
    try:
        pool.submit(_noop, 0).result()
        first = time.perf_counter() - started
        serial = []
        for i in range(jobs):
            t = time.perf_counter()
            pool.submit(_noop, i).result()
            serial.append(time.perf_counter() - t)
        t = time.perf_counter()
        for fut in [pool.submit(_noop, i) for i in range(jobs)]:
            fut.result()
        batch = (time.perf_counter() - t) / jobs
    finally:
        pool.shutdown()
    return {"first_s": first, "serial_median_s": statistics.median(serial), "batch_per_job_s": batch}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return sorted(
            ({k: v for k, v in r.items() if not k.endswith("_s")} for r in csv.DictReader(f)),
            key=lambda r: (r["method"], int(r["seed"]), int(r["iteration"])),
        )


def _records_equal(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*.npz"))
    if files != sorted(p.relative_to(b) for p in b.rglob("*.npz")):
        return False
    for rel in files:
        x, y = np.load(a / rel), np.load(b / rel)
        if sorted(x.files) != sorted(y.files) or any(not np.array_equal(x[k], y[k]) for k in x.files):
            return False
    return True


def cells(args: argparse.Namespace, work: Path, order: tuple[str, ...] = ("process", "ray")) -> dict[str, dict]:
    from mile_ros.experiments import BenchmarkPlan, get_preset, run_benchmark
    from mile_ros.experiments.tasks import prepare_human, prepare_task

    plan = BenchmarkPlan("single", [args.task], [args.method], args.seeds, 1, 1, preset=args.preset)
    preset = get_preset(args.preset)
    cache = work / "cache"
    prepare_task(args.task, preset, cache)
    for seed in args.seeds:
        prepare_human(args.task, seed, preset, cache, {})
    out: dict[str, dict[str, float]] = {}
    for backend in order:
        run = work / backend
        shutil.copytree(cache, run / "cache")
        t = time.perf_counter()
        run_benchmark(plan, run, 2, log=io.StringIO(), backend=backend, address=args.address)
        wall = time.perf_counter() - t
        with (run / "single.csv").open(newline="") as f:
            cell_s = sum(float(r["cell_s"]) for r in csv.DictReader(f) if r["iteration"] == "1")
        n = len(args.seeds)
        out[backend] = {"cells": n, "wall_s": wall, "cell_s": cell_s, "overhead_per_cell_s": (wall - cell_s / 2) / n}
    same_csv = _rows(work / "process" / "single.csv") == _rows(work / "ray" / "single.csv")
    same_records = _records_equal(work / "process" / "records", work / "ray" / "records")
    out["identical"] = {"csv": same_csv, "records": same_records}
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="the Ray cluster (default: $RAY_ADDRESS or the one started here)")
    p.add_argument("--jobs", type=int, default=20, help="no-op jobs per dispatch measurement")
    p.add_argument("--task", default="LunarLander-v3")
    p.add_argument("--method", default="iwr")
    p.add_argument("--preset", default="smoke")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--skip-cells", action="store_true", help="only the dispatch figures")
    p.add_argument("--repeats", type=int, default=1, help="cell runs, alternating which backend goes first")


def run(args: argparse.Namespace) -> int:
    """The dispatch figures of both backends, then (unless ``--skip-cells``) the same cells through each."""
    print("dispatch of a no-op job (2 workers / the cluster's CPUs):")
    print("backend  first job (workers start)  one at a time (median)  in a batch (per job)")
    for backend in ("process", "ray"):
        d = dispatch(backend, args.address, args.jobs)
        print(
            f"{backend:<8} {d['first_s']:>24.2f} s {d['serial_median_s'] * 1e3:>20.2f} ms"
            f" {d['batch_per_job_s'] * 1e3:>18.2f} ms",
            flush=True,
        )
    if args.skip_cells:
        return 0
    print(f"\ncells: {args.task} {args.method} {args.preset}, seeds {args.seeds}, 1 iteration, 2 at a time")
    print("run  backend  cells  wall      sum(cell_s)  overhead per cell")
    identical = True
    for rep in range(args.repeats):
        order = ("process", "ray") if rep % 2 == 0 else ("ray", "process")
        with tempfile.TemporaryDirectory(prefix="backends-") as tmp:
            res = cells(args, Path(tmp), order)
        for backend in order:
            r = res[backend]
            print(
                f"{rep + 1:>3}  {backend:<8} {r['cells']:>5}  {r['wall_s']:>6.1f} s  {r['cell_s']:>9.1f} s"
                f"  {r['overhead_per_cell_s']:>10.2f} s",
                flush=True,
            )
        same = res["identical"]
        print(f"     identical results: CSV (timings aside) {same['csv']}, records {same['records']}", flush=True)
        identical = identical and same["csv"] and same["records"]
    return 0 if identical else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
