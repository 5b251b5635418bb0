"""``mile-ros``: one command with a subcommand per job.

Each subcommand lives in its own module under ``mile_ros.cli`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = (
    "bench",  # every speed benchmark: training, encoder, takeover, graph, sim (mile_ros.benchmarks)
    "init_policy",  # mediocre initial policies for the simulation tasks
    "experiment",  # the paper's simulation experiments: mile-ros benchmark
    "replay",  # retrain methods on a benchmark cell's saved record
    "sim",  # the simulated intervention session on the ROS 2 graph
    "train",  # the trainer, once, on a directory of bags
    "doctor",  # checks a machine before a real-robot session
    "security",  # DDS-security keystore for the session's nodes
    "screen",  # the operator's terminal view of a running session
    "export",  # episode bags as a LeRobotDataset, and LeRobot datasets back as training data
    "bags",  # mile-ros bags info|check|repair: what each episode bag holds, what is wrong, the fix
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mile-ros", description="MILE: learn a robot policy from human interventions."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"mile_ros.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
