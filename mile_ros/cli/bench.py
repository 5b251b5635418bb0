"""``mile-ros bench``: speed benchmarks that print figures (ratios against a baseline in the same run)."""

from __future__ import annotations

import argparse
import importlib

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
    training.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    training.set_defaults(func=_run_training)
    for name in _EXTRA_BENCHES:
        try:
            importlib.import_module(name).add_to(benches)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def _run_training(args: argparse.Namespace) -> int:
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
    results = []
    for label, kw in cases:
        r = bench_training(**kw, rows=args.rows, epochs=args.epochs, repeats=args.repeats, label=label)
        results.append(r)
        print(f"{label} [{r.rows} steps, {r.intervention_rate:.0%} interventions, batch 1024]")
        print(f"  MILE step {r.mile_step_ms:.2f} ms, BC step {r.bc_step_ms:.2f} ms, ratio {r.ratio:.2f}")
        if r.update_s is not None:
            print(f"  {args.epochs}-epoch update: {r.update_s:.1f} s")
    cont = results[-1]
    print(f"ratio MILE/BC per step: {cont.ratio:.2f}")
    update = cont.update_s if cont.update_s is not None else float("nan")
    print(f"{args.epochs}-epoch update on {cont.rows} steps: {update:.1f} s")
    return 0
