"""``mile-ros bench``: one command for every speed benchmark, each printing its figures.

Each benchmark runs once through ``mile-ros bench all --quick`` with the others skipped, so the test
uses the same short settings as a user's smoke check (one home: ``mile_ros.benchmarks.BENCHES``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from test_benchmark_ray import RAY_ENV, ray_head  # noqa: F401  (a local Ray head, for the backends bench)

from mile_ros.benchmarks import BENCHES
from mile_ros.cli.main import main

# A figure line each benchmark prints (measured values, so only their form is checked).
FIGURES = {
    "training": r"ratio MILE/BC per step: \d+\.\d\d\n2-epoch update on 500 steps: \d+\.\d s",
    "lerobot": r"600 steps in 2 episodes: bags [\d.]+ MB(.|\n)*per 1,000 steps [\d.]+ MB and [\d.]+ s",
    "encoder": r"\[cpu\] latency per frame \(batch 1, 2 frames\): median [\d.]+ ms.*\n\[cpu\] throughput \(batch 2\)",
    "takeover": r"pad press -> human command out of arbitration.*\(2 presses\): median [\d.]+ ms",
    "graph": r"/camera/image_raw +published +\d+, recorded +\d+, lost \d+(.|\n)*messages lost in all: \d+",
    "sim": r"\| LunarLander-v3 \| [\d.]+ / -?\d+ \|",
    "backends": r"\nprocess +[\d.]+ s +[\d.]+ ms +[\d.]+ ms\nray +[\d.]+ s",
}


def test_every_benchmark_has_a_figure_check():
    assert set(FIGURES) == set(BENCHES)


def test_bench_all_refuses_unknown_or_empty_selections(capsys):
    assert main(["bench", "all", "--skip", "training,speed"]) == 2
    assert "unknown benchmark(s) ['speed']" in capsys.readouterr().err
    assert main(["bench", "all", "--skip", ",".join(BENCHES)]) == 2
    assert "every benchmark was skipped" in capsys.readouterr().err


def test_training_bench_refuses_more_load_sessions_than_processes(capsys):
    assert main(["bench", "training", "--load", "2", "--load-sessions", "3", "--epochs", "0"]) == 2
    assert "--load-sessions must lie between 1 and --load" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BENCHES))
def test_each_benchmark_runs_and_prints_its_figures(name, request):
    others = ",".join(n for n in BENCHES if n != name)
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    if name == "backends":  # it measures a running cluster: $RAY_ADDRESS
        env.update(RAY_ENV, RAY_ADDRESS=request.getfixturevalue("ray_head"))
    proc = subprocess.run(
        [sys.executable, "-m", "mile_ros.cli.main", "bench", "all", "--quick", "--skip", others],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert f"== mile-ros bench {' '.join([name, *BENCHES[name].quick])}" in out
    assert re.search(FIGURES[name], out), out[-3000:]
    assert out.rstrip().endswith(f"== {name}: ok")
