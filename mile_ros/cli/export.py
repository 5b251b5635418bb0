"""``mile-ros export``: a session's episode bags as a LeRobotDataset (v3.0), or a LeRobot dataset back.

``mile-ros export --lerobot BAGS OUT`` writes every complete episode bag under ``BAGS`` (train and eval
episodes; discarded ones with ``--include-discarded``) as a LeRobotDataset in ``OUT``: the executed
action as ``action``, the robot's proposal, the human's action, the intervention flag, the predicted
``P(I=1|s)``, each episode's success and end reason, and the camera where the bags have it.
``mile-ros export --from-lerobot DIR OUT.npz`` turns a LeRobotDataset with an intervention column into
the project's dataset file (``InterventionDataset``), which every method trains on and
``mile-ros train --prior`` takes. (``mile-ros bench lerobot`` times the export.)
Exit status 0: written; 2: bad input (each bag left out is named).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="episode bags as a LeRobotDataset (v3.0), or a LeRobot dataset as training data",
        description=__doc__.splitlines()[0].strip("`"),
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--lerobot", nargs=2, type=Path, metavar=("BAGS", "OUT"), help="bags folder -> LeRobotDataset")
    how.add_argument(
        "--from-lerobot", nargs=2, type=Path, metavar=("DIR", "OUT.npz"), help="LeRobotDataset -> dataset file"
    )
    p.add_argument("--task", help="the episodes' task text (default: each bag's task)")
    p.add_argument("--modes", default="train,eval", help="episode modes to export (default train,eval)")
    p.add_argument("--include-discarded", action="store_true", help="also export episodes the operator discarded")
    p.add_argument("--no-camera", action="store_true", help="leave the camera images out")
    p.add_argument("--fps", type=int, help="frames per second (default: the bags' median step period)")
    p.add_argument("--robot-type", help="info.json's robot_type")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--intervention-key", help="--from-lerobot: the intervention column (default: found)")
    p.add_argument("--observation-key", default="observation.state", help="--from-lerobot: observation column")
    p.add_argument("--action-key", default="action", help="--from-lerobot: executed action column")
    p.add_argument("--frame-stack", type=int, default=3, help="--from-lerobot: the spec's frame stack (default 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mile_ros.graph.bag_dataset import BagDatasetError
    from mile_ros.graph.lerobot import LeRobotFormatError
    from mile_ros.learning import DatasetError

    try:
        if args.lerobot:
            return _export(args)
        return _from_lerobot(args)
    except (LeRobotFormatError, BagDatasetError, DatasetError) as exc:  # DatasetError: NaN rows, no human action
        print(f"mile-ros export: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mile-ros export: {exc}", file=sys.stderr)
        return 4


def _export(args: argparse.Namespace) -> int:
    from mile_ros.graph.lerobot import export_lerobot

    bags, out = args.lerobot
    report = export_lerobot(
        bags,
        out,
        task=args.task,
        modes=tuple(m for m in args.modes.split(",") if m),
        include_discarded=args.include_discarded,
        camera=False if args.no_camera else None,
        fps=args.fps,
        robot_type=args.robot_type,
        overwrite=args.overwrite,
    )
    for path, why in report.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(report.summary())
    return 0


def _from_lerobot(args: argparse.Namespace) -> int:
    from mile_ros.graph.lerobot import LeRobotFormatError, from_lerobot

    src, out = args.from_lerobot
    if out.exists() and not args.overwrite:
        raise LeRobotFormatError(f"{out} exists; refusing to overwrite it (--overwrite replaces it)")
    ds, notes = from_lerobot(
        src,
        observation_key=args.observation_key,
        action_key=args.action_key,
        intervention_key=args.intervention_key,
        frame_stack=args.frame_stack,
    )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    ds.save(out)
    print(
        f"{len(ds)} steps in {len(ds.episodes)} episodes ({int(ds.intervention.sum())} intervened, "
        f"obs {ds.spec.obs_dim}, actions {ds.spec.act_dim}) -> {out}"
    )
    return 0
