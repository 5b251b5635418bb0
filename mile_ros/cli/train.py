"""``mile-ros train --bags DIR``: one update of a method (MILE by default) on a directory of episode bags.

It trains as the trainer node does (``graph.training.train_from_bags``, hence ``baselines.train``),
outside the graph.

Bad data never ends in a traceback: a bag that cannot be read or whose episode never ended is named
and left out, a bag with values that cannot be trained on is named and quarantined, and training goes
on with the rest. Exit status 0: a new checkpoint; 2: nothing to train on or bad input (each bag named
on stderr); 3: training diverged (no checkpoint written); 4: a file could not be read or written (a full
disk, permissions).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
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
    # Unset settings are the method's own (mile_ros.baselines.method_config), as the trainer node's;
    # the help states MILE's without importing torch (a test keeps them equal to MileConfig's).
    p.add_argument("--method", default="mile", help="the method to train: mile (default) or a baseline")
    p.add_argument("--task", help="take the per-task settings of this task's preset (sim/<task>.yaml)")
    p.add_argument("--options", default="", help='more settings, as the benchmark\'s method options: "paper,lr=1e-4"')
    p.add_argument("--epochs", type=int, help="epochs (MILE's default 300)")
    p.add_argument("--batch-size", type=int, help="minibatch size (default 1024)")
    p.add_argument("--lr", type=float, help="learning rate (MILE's default 1e-4)")
    p.add_argument("--cost", type=float, help="where MILE's cost c starts (default: the bags' own rate decides)")
    p.add_argument("--sigma", type=float, help="where MILE's probit scale sigma starts (default 5; both are fitted)")
    p.add_argument(
        "--lambda-mental", type=float, help="MILE's mental-model anchor weight (default 1; 0: the paper's loss)"
    )
    p.add_argument("--prior", type=Path, help="the initial policy's demonstrations (.npz), trained on too")
    p.add_argument("--lambda-prior", type=float, help="weight of the prior's log-likelihood (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mile_ros.graph.bag_dataset import BagDatasetError
    from mile_ros.graph.training import TrainingError, train_from_bags, trainer_config
    from mile_ros.learning import CheckpointError, DatasetError, TrainingDivergedError

    params = {
        "method": args.method,
        "task": args.task,
        "options": args.options,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "cost": args.cost,
        "sigma": args.sigma,
        "lambda_mental": args.lambda_mental,
        "lambda_prior": args.lambda_prior,
    }
    if args.cost is not None:  # a cost given is where c starts, not replaced by the bags' rate
        params["cost_from_rate"] = False
    try:
        config = trainer_config(params, 0)
    except ValueError as exc:
        print(f"mile-ros train: {exc}", file=sys.stderr)
        return 2
    # The seed as given, not a session's update seed; RLIF has no progress bar.
    progress = {"progress": not args.no_progress} if hasattr(config, "progress") else {}
    config = replace(config, seed=args.seed, **progress)
    # Every bag left out is named as the dataset is built, so the names are there even if training fails.
    bag_log = logging.getLogger("mile_ros.graph.bag_dataset")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("skipped %(message)s"))
    level, propagate = bag_log.level, bag_log.propagate
    bag_log.addHandler(handler)
    bag_log.setLevel(logging.INFO)
    bag_log.propagate = False
    try:
        out = train_from_bags(args.bags, args.init, args.out, config, prior=args.prior, method=args.method)
    except TrainingDivergedError as exc:
        print(
            f"mile-ros train: training diverged, no checkpoint written: {exc} "
            "(a learning rate too high, or values far out of scale within the accepted limits)",
            file=sys.stderr,
        )
        return 3
    except (TrainingError, BagDatasetError, CheckpointError, DatasetError) as exc:
        print(f"mile-ros train: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mile-ros train: {exc}", file=sys.stderr)
        return 4
    finally:
        bag_log.removeHandler(handler)
        bag_log.setLevel(level)
        bag_log.propagate = propagate
    for path, note in out.report.recovered:
        print(f"recovered {path}: {note}", file=sys.stderr)
    print(f"{out.report.summary()}; intervention rate {out.intervention_rate:.3f}")
    print(f"best epoch {out.best_epoch}, {out.seconds:.1f} s -> {out.checkpoint}")
    return 0
