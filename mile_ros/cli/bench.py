"""``mile-ros bench``: speed benchmarks that print figures (ratios against a baseline in the same run)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import torch

# Other benchmarks live beside their subsystems; each module exposes add_to(bench_subparsers).
_EXTRA_BENCHES = ("mile_ros.cli.bench_encoder", "mile_ros.cli.bench_graph")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="speed benchmarks")
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    training = benches.add_parser("training", help="MILE update vs behaviour cloning, per step and per update")
    training.add_argument("--rows", type=int, default=10_000, help="recorded steps (default 10000)")
    training.add_argument("--epochs", type=int, default=300, help="epochs of the timed update (0: skip it)")
    training.add_argument("--repeats", type=int, default=30, help="timed steps per method")
    training.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the steps, and the most the update may use (default: torch's choice / the cores)",
    )
    training.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help="time the update again while N busy-loop processes, started and stopped by the bench, hold the CPUs",
    )
    training.add_argument(
        "--load-sessions",
        type=int,
        default=1,
        metavar="K",
        help="spread the load over K sessions, as K other users' jobs (default 1)",
    )
    training.add_argument(
        "--compare-fixed",
        action="store_true",
        help="under the load, also time the update on --threads fixed (as before the trainer adapted them)",
    )
    training.add_argument(
        "--cases",
        choices=("both", "continuous"),
        default="both",
        help="which networks to time (continuous: only the (256, 256) case the headline figures use)",
    )
    training.set_defaults(func=_run_training)
    for name in _EXTRA_BENCHES:
        try:
            importlib.import_module(name).add_to(benches)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def _run_training(args: argparse.Namespace) -> int:
    from mile_ros.benchmarks.load import autogroup_enabled
    from mile_ros.benchmarks.training import bench_training

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cases = [
        (
            "discrete: (64, 64) MLPs, 8-d observations, 4 actions",
            dict(obs_dim=8, act_dim=4, discrete=True, hidden=(64, 64)),
        ),
        (
            "continuous: (256, 256) MLPs, 156-d observations, 4-d actions",
            dict(obs_dim=156, act_dim=4, discrete=False, hidden=(256, 256)),
        ),
    ]
    if args.cases == "continuous":
        cases = cases[1:]
    if args.load:
        if not 1 <= args.load_sessions <= args.load:
            print("mile-ros bench: --load-sessions must lie between 1 and --load", file=sys.stderr)
            return 2
        print(f"{os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} ours; load average {_load()}")
    results = []
    for label, kw in cases:
        # The load only where the headline update is timed: the last case.
        loaded = args.load if (label, kw) == cases[-1] else 0
        r = bench_training(
            **kw,
            rows=args.rows,
            epochs=args.epochs,
            repeats=args.repeats,
            label=label,
            threads=args.threads,
            load=loaded,
            load_sessions=args.load_sessions,
            compare_fixed=args.compare_fixed,
        )
        results.append(r)
        print(f"{label} [{r.rows} steps, {r.intervention_rate:.0%} interventions, batch 1024]")
        print(f"  MILE step {r.mile_step_ms:.2f} ms, BC step {r.bc_step_ms:.2f} ms, ratio {r.ratio:.2f}")
        if r.update_s is not None:
            print(f"  {args.epochs}-epoch update: {r.update_s:.1f} s on {_threads(r.update_threads)}")
    cont = results[-1]
    print(f"ratio MILE/BC per step: {cont.ratio:.2f}")
    update = cont.update_s if cont.update_s is not None else float("nan")
    print(f"{args.epochs}-epoch update on {cont.rows} steps: {update:.1f} s")
    if cont.loaded is not None:
        lo = cont.loaded
        group = {True: "scheduled per session", False: "not grouped by session", None: "grouping unknown"}
        print(
            f"under load {lo.processes} ({lo.processes} busy loops in {lo.sessions} session(s), "
            f"{group[autogroup_enabled()]}): {lo.update_s:.1f} s on {_threads(lo.threads)}, "
            f"{lo.update_s / update:.2f}x the quiet figure"
        )
        if lo.fixed_update_s is not None:
            fixed = args.threads or torch.get_num_threads()
            print(
                f"under load {lo.processes}, {fixed} threads fixed: {lo.fixed_update_s:.1f} s, "
                f"{lo.fixed_update_s / update:.2f}x the quiet figure"
            )
    return 0


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _threads(used: list[int] | None) -> str:
    if not used:
        return "? threads"
    return f"{used[0]} thread{'s' if used[0] > 1 else ''}" if len(used) == 1 else f"{used} threads"
