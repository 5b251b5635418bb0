"""``mile-ros benchmark``: the paper's simulation experiments, resumable, on every core you give it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_TASKS = ("drawer-open-v3",)
DEFAULT_METHODS = ("mile", "bc_intervention", "hg_dagger", "iwr", "sirius", "rlif")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="run the paper's simulation experiments (single, iterative, demos, prediction)",
        description="Task x method x seed cells over a process pool; rerun with the same --out to resume",
    )
    p.add_argument("--experiment", required=True, choices=("single", "iterative", "demos", "prediction"))
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="Metaworld v3 names or LunarLander-v3")
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help="methods, optionally with overrides: mile@continuous_form=authors,learn_cost=true"
        " (prediction: the MILE variants among them)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=20, help="iterations (single: always 1)")
    p.add_argument("--episodes", type=int, default=1, help="intervention episodes per iteration")
    p.add_argument("--demos", nargs="+", type=int, default=[0, 5, 10, 15], help="demos experiment: counts")
    p.add_argument("--preset", default="quick", help="quick, smoke or paper (see mile_ros/experiments/presets.py)")
    p.add_argument(
        "--refit-mental", action="store_true", help="refit the human's mental model from fresh rollouts every iteration"
    )
    p.add_argument(
        "--belief",
        choices=("tracking", "frozen"),
        default="tracking",
        help="the human's belief about the robot: refit on each evaluation's episodes (tracking, default) or "
        "the initial policy's throughout (frozen, the authors' code)",
    )
    p.add_argument(
        "--train-from",
        choices=("initial", "previous"),
        default="initial",
        help="each iteration trains from the initial policy (default) or continues from the method's last one",
    )
    p.add_argument(
        "--human",
        default="",
        metavar="KEY=VALUE,...",
        help="change the task presets' simulated human: sigma (probit scale), min_takeover_steps (hold each"
        " takeover that long), action_mode (eq3, authors or expert), timing (per_step, holding, waiting,"
        " holding_waiting), hold_mean, wait_steps; its cost is calibrated for them",
    )
    p.add_argument(
        "--select-by-rollouts",
        type=int,
        default=0,
        metavar="EPISODES",
        help="the authors' model selection (simulation only): score each candidate epoch by this many rollouts"
        " on selection episodes (never the evaluation ones) and keep the best; 0 (default): the last epoch",
    )
    p.add_argument("--select-every", type=int, default=50, metavar="EPOCHS", help="epochs between candidates")
    p.add_argument("--out", type=Path, required=True, help="output folder (CSV, summary, plots, cache)")
    p.add_argument("--workers", type=int, default=2, help="processes (1: run here)")
    p.add_argument(
        "--backend",
        choices=("process", "ray"),
        default="process",
        help="where the cells run: process (--workers processes here, the default) or ray (one CPU per cell on an"
        " existing Ray cluster, whose nodes must all see --out at the same path)",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="--backend ray: the cluster's head, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS, else the"
        " cluster that `ray start --head` started on this machine)",
    )
    p.add_argument("--report-only", action="store_true", help="only rewrite the summary and plots from the CSV")
    p.set_defaults(func=run)


def check_names(methods: list[str], tasks: list[str]) -> None:
    """Raise ValueError naming any unknown method (overrides allowed) or task."""
    from mile_ros.baselines import METHODS
    from mile_ros.experiments import parse_method
    from mile_ros.sim import valid_tasks

    for m in methods:
        name, _ = parse_method(m)
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    valid = set(valid_tasks())
    bad = [t for t in tasks if t not in valid]
    if bad:
        raise ValueError(f"unknown task(s) {', '.join(bad)}; e.g. drawer-open-v3, peg-insert-side-v3, LunarLander-v3")


def run(args: argparse.Namespace) -> int:
    from mile_ros.experiments import BenchmarkPlan, get_preset, parse_method, plan_cells, run_benchmark, write_report
    from mile_ros.experiments.runner import check_settings

    try:
        get_preset(args.preset)
        check_names(args.methods, args.tasks)
        _, human = parse_method(f"human@{args.human}")
        if args.iterations < 1 or args.episodes < 1 or args.workers < 1:
            raise ValueError("--iterations, --episodes and --workers must be at least 1")
        if args.address and args.backend != "ray":
            raise ValueError("--address is the Ray cluster's: use it with --backend ray")
        if args.backend == "ray" and not args.report_only:
            from mile_ros.experiments.backends import connect_ray

            connect_ray(args.address)  # no cluster there: refused before anything is written
    except ValueError as exc:
        print(f"mile-ros benchmark: {exc}", file=sys.stderr)
        return 2
    csv_path = args.out / f"{args.experiment}.csv"
    if not args.report_only:
        plan = BenchmarkPlan(
            args.experiment,
            args.tasks,
            args.methods,
            args.seeds,
            args.iterations,
            args.episodes,
            args.demos,
            args.preset,
            args.refit_mental,
            args.train_from,
            human,
            args.select_by_rollouts,
            args.select_every,
            args.belief,
        )
        try:
            plan_cells(plan)
            args.out.mkdir(parents=True, exist_ok=True)
            check_settings(args.out, plan)
        except ValueError as exc:  # a bad plan, or settings unlike the stored run's: nothing runs
            print(f"mile-ros benchmark: {exc}", file=sys.stderr)
            return 2
        from mile_ros.experiments.backends import RayUnavailableError

        try:
            csv_path = run_benchmark(plan, args.out, args.workers, backend=args.backend, address=args.address)
        except RayUnavailableError as exc:  # e.g. --out not shared with the cluster's nodes
            print(f"mile-ros benchmark: {exc}", file=sys.stderr)
            return 2
    if not csv_path.is_file():
        print(f"mile-ros benchmark: no results in {csv_path}", file=sys.stderr)
        return 1
    summary = write_report(csv_path)
    print(summary.read_text())
    print(f"summary: {summary}")
    return 0
