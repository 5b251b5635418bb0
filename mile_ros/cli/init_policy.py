"""``mile-ros init-policy``: make a task's mediocre initial policy (BC of the expert on few demos)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init-policy",
        help="make a mediocre initial policy for a simulation task",
        description="Behaviour-clone the scripted expert on a few demonstrations (recipe in "
        "sim/<task>.yaml), check its success rate (or return) on fixed seeds, save it as a checkpoint.",
    )
    p.add_argument(
        "--task", required=True, help="a Metaworld v3 task (e.g. drawer-open-v3) or LunarLander-v3"
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--seed", type=int, default=0, help="recipe seed (same seed, same weights)")
    p.add_argument("--check-episodes", type=int, default=None, help="episodes of the band check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mile_ros.sim import make_initial_policy, valid_tasks
    from mile_ros.sim.initial_policy import demonstrations_path as prior_path

    if args.task not in valid_tasks():
        print(
            f"mile-ros init-policy: unknown task {args.task!r}; valid tasks: {', '.join(valid_tasks())}",
            file=sys.stderr,
        )
        return 2
    if args.check_episodes is not None and args.check_episodes < 1:
        print("mile-ros init-policy: --check-episodes must be at least 1", file=sys.stderr)
        return 2
    result = make_initial_policy(args.task, seed=args.seed, check_episodes=args.check_episodes)
    if result.demonstrations is not None:  # the trainers' prior, found beside the policy by mile-ros sim
        result.demonstrations.save(prior_path(args.out))
    path = result.checkpoint.save(args.out)
    meta = result.checkpoint.meta
    lo, hi = meta["band"]
    print(
        f"{args.task}: {result.demos} demonstration(s), check {meta['metric']} {result.check_metric:.3g} "
        f"(band {lo}..{hi}: {'in' if result.in_band else 'OUTSIDE'}), {len(result.attempts)} attempt(s), "
        f"{result.seconds:.1f} s -> {path} (demonstrations: {prior_path(args.out)})"
    )
    if not result.in_band:
        print(
            "mile-ros init-policy: warning: no recipe attempt landed in the band; kept the closest",
            file=sys.stderr,
        )
    return 0
