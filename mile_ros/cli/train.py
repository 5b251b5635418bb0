"""``mile-ros train --bags DIR``: one MILE update on a directory of episode bags, outside the graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="run the trainer once on a directory of episode bags",
        description=__doc__.splitlines()[0].strip("`"),
    )
    p.add_argument("--bags", required=True, type=Path, help="folder of episode bags (searched recursively)")
    p.add_argument("--init", required=True, type=Path, help="checkpoint to start from (gives the spec)")
    p.add_argument("--out", required=True, type=Path, help="new checkpoint file (must not exist)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--cost", type=float, default=60.0, help="MILE intervention cost c (default 60)")
    p.add_argument("--sigma", type=float, default=75.0, help="MILE probit scale sigma (default 75)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mile_ros.graph.bag_dataset import BagDatasetError
    from mile_ros.graph.training import TrainingError, train_from_bags
    from mile_ros.learning import CheckpointError, MileConfig

    config = MileConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        cost=args.cost,
        sigma=args.sigma,
        seed=args.seed,
        progress=not args.no_progress,
    )
    try:
        out = train_from_bags(args.bags, args.init, args.out, config)
    except (TrainingError, BagDatasetError, CheckpointError) as exc:
        print(f"mile-ros train: {exc}", file=sys.stderr)
        return 2
    for path, why in out.report.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for path, note in out.report.recovered:
        print(f"recovered {path}: {note}", file=sys.stderr)
    print(f"{out.report.summary()}; intervention rate {out.intervention_rate:.3f}")
    print(f"best epoch {out.best_epoch}, {out.seconds:.1f} s -> {out.checkpoint}")
    return 0
