"""``mile-ros replay``: retrain methods on one benchmark cell's saved record and evaluate them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay",
        help="retrain methods on a benchmark cell's saved record",
        description=(
            "Train each method on the record's episodes up to each given iteration (from the initial "
            "policy) and evaluate it on the benchmark's evaluation episodes. Records are written by "
            "mile-ros benchmark under OUT/records/<task>/."
        ),
    )
    p.add_argument("--record", type=Path, required=True, help="a cell's record (.npz)")
    p.add_argument("--task", required=True, help="the record's task")
    p.add_argument("--init", type=Path, required=True, help="the initial policy (OUT/cache/<task>/init.pt)")
    p.add_argument(
        "--methods",
        nargs="+",
        required=True,
        help="methods, optionally with a variant and overrides: mile@lr=5e-6, mile@paper",
    )
    p.add_argument("--iterations", nargs="+", type=int, required=True, help="train on the record up to these")
    p.add_argument("--seed", type=int, required=True, help="the cell's seed (sets the update seeds)")
    p.add_argument("--episodes", type=int, default=1, help="the cell's episodes per iteration")
    p.add_argument("--demos", type=int, default=0, help="expert demonstrations given to the baselines")
    p.add_argument(
        "--prior",
        type=Path,
        help="the initial policy's demonstrations (default: <stem>-demos.npz beside --init, where it exists)",
    )
    p.add_argument("--preset", default="quick", help="the cell's preset (quick, smoke or paper)")
    p.add_argument(
        "--without-episodes",
        nargs="+",
        type=int,
        default=[],
        metavar="ID",
        help="leave these episodes (ids from 0, iteration i's first is episodes*(i-1)) out of training",
    )
    p.add_argument(
        "--diagnose",
        action="store_true",
        help="also measure each trained policy on its training steps: error against the scripted expert's"
        " action, std, P(I=1|s) and its AUC (continuous tasks)",
    )
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mile_ros.cli.experiment import check_names
    from mile_ros.experiments import get_preset
    from mile_ros.experiments.replay import replay_record, replay_table
    from mile_ros.learning import CheckpointError, DatasetError, InterventionDataset, load_checkpoint
    from mile_ros.sim.initial_policy import demonstrations_path

    try:
        preset = get_preset(args.preset)
        check_names(args.methods, [args.task])
        if not args.record.is_file():
            raise ValueError(f"no record at {args.record}")
        record = InterventionDataset.load(args.record)
        init = load_checkpoint(args.init)
        prior_path = args.prior or demonstrations_path(args.init)
        if args.prior and not prior_path.is_file():
            raise ValueError(f"no prior at {prior_path}")
        prior = InterventionDataset.load(prior_path) if prior_path.is_file() else None
        expert = None
        if args.diagnose:
            from mile_ros.experiments.diagnose import expert_actions

            expert = expert_actions(args.task, record)
        rows = replay_record(
            record,
            args.task,
            init,
            args.methods,
            args.iterations,
            preset,
            args.seed,
            args.episodes,
            args.demos,
            args.without_episodes,
            prior,
            expert,
        )
    except (ValueError, DatasetError, CheckpointError) as exc:
        print(f"mile-ros replay: {exc}", file=sys.stderr)
        return 2
    table = replay_table(rows)
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0
