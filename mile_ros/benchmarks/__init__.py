"""Speed benchmarks, one module per subject; ``mile-ros bench NAME`` runs one, ``mile-ros bench all`` each.

Every benchmark prints measured figures only, as ratios against a baseline measured in the same run
or with the settings that produced them; nothing here asserts a speed. Each module exposes
``add_arguments(parser)`` (standard library only, so that ``mile-ros --help`` stays fast) and
``run(args) -> int``, and imports its heavy dependencies when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BENCHES", "Bench"]


@dataclass(frozen=True)
class Bench:
    module: str  # mile_ros.benchmarks.<name>
    help: str
    quick: tuple[str, ...]  # arguments of a short run: the smoke check of `bench all --quick` and the tests


# The order of `mile-ros bench all`: the cheap, dependency-light ones first.
BENCHES: dict[str, Bench] = {
    "training": Bench(
        "mile_ros.benchmarks.training",
        "MILE update vs behaviour cloning, per step and per update",
        ("--rows", "500", "--epochs", "2", "--repeats", "3", "--cases", "continuous"),
    ),
    "lerobot": Bench(
        "mile_ros.benchmarks.lerobot",
        "LeRobotDataset export: size and time per 1,000 steps, against reading the bags",
        ("--steps", "600"),
    ),
    "encoder": Bench(
        "mile_ros.benchmarks.encoder",
        "R3M encoder latency per frame and throughput (CPU, and GPU if any)",
        ("--frames", "2", "--batch", "2", "--devices", "cpu"),
    ),
    "takeover": Bench(
        "mile_ros.benchmarks.takeover",
        "gamepad event -> Joy published -> human command out of arbitration",
        (
            "--presses",
            "4",
        ),
    ),
    "graph": Bench(
        "mile_ros.benchmarks.graph",
        "node graph: control-loop rate and latencies, recorder losses",
        ("recorder", "--duration", "3"),
    ),
    "sim": Bench(
        "mile_ros.benchmarks.sim",
        "experts', initial policies' and the simulated human's figures and speed per task",
        ("--tasks", "LunarLander-v3", "--episodes", "2", "--mental-rollouts", "1", "--human-episodes", "1"),
    ),
    "backends": Bench(
        "mile_ros.benchmarks.backends",
        "the experiments' process pool and Ray on the same cells: dispatch cost per job and per cell",
        ("--skip-cells", "--jobs", "2"),
    ),
}
