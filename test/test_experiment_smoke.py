"""CI smoke run of ``mile-ros benchmark``: every method end to end on LunarLander, through the real CLI.

LunarLander is the smoke task because its episodes are cheap and one round of 4 intervention
episodes reliably lifts MILE's return well above the initial policy's: with the ``smoke`` preset,
MILE's return after one round beat the initial policy's (-197 on evaluation seeds 0-9) by more than
120 on each of the 10 seeds tried (0-9, see docs/results-history.md), so the margin asserted here is 50.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

METHODS = ["mile", "bc_intervention", "hg_dagger", "iwr", "sirius", "rlif"]
TASK = "LunarLander-v3"


def benchmark(out: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mile_ros.cli.main", "benchmark", "--tasks", TASK, "--preset", "smoke"]
    cmd += ["--out", str(out), *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("benchmark")


def test_single_iteration_every_method_and_mile_improves(out):
    proc = benchmark(out, "--experiment", "single", "--seeds", "0", "--episodes", "4", "--methods", *METHODS)
    rows = read(out / "single.csv")
    assert {r["method"] for r in rows} == set(METHODS)
    assert not [r for r in rows if r["error"]], [r["error"] for r in rows if r["error"]]
    final = {r["method"]: r for r in rows if r["iteration"] == "1"}
    init = next(r for r in rows if r["iteration"] == "0")
    for method, row in final.items():  # every method trained on the same intervention record
        assert int(row["intervened_steps"]) == int(final["mile"]["intervened_steps"]) > 0, method
        assert float(row["train_s"]) > 0 and float(row["eval_s"]) > 0 and float(row["sim_s"]) > 0
    init_return, mile_return = float(init["mean_return"]), float(final["mile"]["mean_return"])
    assert mile_return > init_return + 50, f"MILE {mile_return:.1f} vs initial policy {init_return:.1f}"
    summary = (out / "single_summary.md").read_text()
    assert "| mile |" in summary and "initial policy" in summary
    assert (out / "single_success_vs_iteration.png").stat().st_size > 1000
    assert "[6/6]" in proc.stderr  # progress lines

    again = benchmark(out, "--experiment", "single", "--seeds", "0", "--episodes", "4", "--methods", *METHODS)
    assert "6 already in" in again.stderr
    assert len(read(out / "single.csv")) == len(rows)  # resumed: nothing rerun, nothing duplicated

    cmd = [sys.executable, "-m", "mile_ros.cli.main", "benchmark", "--experiment", "single", "--tasks", TASK]
    cmd += ["--preset", "smoke", "--seeds", "0", "--episodes", "3", "--out", str(out)]
    other = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "episodes 4 (now 3)" in other.stderr, other.stderr


def test_iterative_and_prediction_experiments_run_and_resume_a_partial_plan(out):
    benchmark(
        out, "--experiment", "iterative", "--seeds", "0", "--iterations", "2", "--episodes", "2", "--methods", "iwr"
    )
    proc = benchmark(
        out,
        "--experiment",
        "iterative",
        "--seeds",
        "0",
        "--iterations",
        "2",
        "--episodes",
        "2",
        "--methods",
        "iwr",
        "mile@discrete_form=authors",
    )
    assert "1 already in" in proc.stderr
    rows = read(out / "iterative.csv")
    assert sorted({r["method"] for r in rows}) == ["iwr", "mile@discrete_form=authors"]
    for method in ("iwr", "mile@discrete_form=authors"):
        its = [r for r in rows if r["method"] == method]
        assert [r["iteration"] for r in its] == ["0", "1", "2"]
        assert int(its[2]["steps_total"]) > int(its[1]["steps_total"]) > 0  # the record grows
    replay_reproduces_the_cell(out, [r for r in rows if r["method"] == "mile@discrete_form=authors"])
    benchmark(out, "--experiment", "prediction", "--seeds", "0", "--iterations", "3", "--episodes", "2")
    pred = read(out / "prediction.csv")
    assert {r["predictor"] for r in pred} == {"mile", "nn_classifier", "majority", "simulated_human"}
    assert sorted({r["iteration"] for r in pred}) == ["2", "3"]
    for r in pred:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["log_likelihood"]) <= 0.0
    majority = [r for r in pred if r["predictor"] == "majority"]
    assert all(float(r["balanced_accuracy"]) == 0.5 for r in majority)
    assert "## prediction" in (out / "prediction_summary.md").read_text()
    assert (out / "records" / TASK / "prediction-mile-s0.npz").is_file()


def replay(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mile_ros.cli.main", "replay", "--task", TASK, "--preset", "smoke", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )


def replay_reproduces_the_cell(out: Path, cell_rows: list[dict[str, str]]) -> None:
    """The saved record, retrained with the cell's own method and seed, gives the cell's figures."""
    method = cell_rows[0]["method"]
    record = out / "records" / TASK / f"iterative-{method}-s0.npz"
    assert record.is_file()
    common = ["--init", str(out / "cache" / TASK / "init.pt"), "--seed", "0", "--episodes", "2"]
    table = out / "replay.md"
    args = ["--record", str(record), "--methods", method, "hg_dagger", "--iterations", "1", "2"]
    proc = replay(*args, "--out", str(table), *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split("|")[1:-1] for line in table.read_text().splitlines()[2:]]
    got = {(c[0].strip(), c[1].strip()): c for c in lines}
    assert len(got) == 4
    for row in cell_rows[1:]:
        mine = got[(method, row["iteration"])]
        assert int(mine[2]) == int(row["steps_total"])
        assert mine[5].strip() == f"{float(row['mean_return']):.1f}", (mine, row["mean_return"])
    bad = replay("--record", str(record), "--methods", method, "--iterations", "3", *common)
    assert bad.returncode == 2 and "not in the record" in bad.stderr, bad.stderr
    # leaving iteration 2's first episode (id 2) out trains on fewer steps; an unknown id is refused
    without = replay(
        "--record", str(record), "--methods", "hg_dagger", "--iterations", "2", "--without-episodes", "2", *common
    )
    assert without.returncode == 0, without.stderr[-3000:]
    steps = int(without.stdout.splitlines()[2].split("|")[3])
    first_two = {r["iteration"]: int(r["steps_total"]) for r in cell_rows}
    assert first_two["1"] < steps < first_two["2"], (steps, first_two)
    bad = replay("--record", str(record), "--methods", method, "--iterations", "2", "--without-episodes", "9", *common)
    assert bad.returncode == 2 and "episodes [9] are not in the record" in bad.stderr, bad.stderr


def test_rollout_selection_keeps_a_candidate_epoch_and_says_which(out, tmp_path):
    """``--select-by-rollouts`` (the authors' model selection): the kept epoch and the rollouts' time
    are in the CSV, and keeping the last epoch (or the initial policy) gives exactly the unselected
    run's figure (or the initial policy's): selection picks weights, it does not change training."""
    runs = {}
    for name, extra in (("plain", []), ("selected", ["--select-by-rollouts", "3"])):
        if (out / "cache").is_dir():  # the first test's initial policy and human: no need to rebuild them
            shutil.copytree(out / "cache", tmp_path / name / "cache")
        args = ["--experiment", "single", "--seeds", "0", "--episodes", "4", "--methods", "mile", "hg_dagger"]
        benchmark(tmp_path / name, *args, *extra)
        runs[name] = read(tmp_path / name / "single.csv")
    plain = {r["method"]: r for r in runs["plain"] if r["iteration"] == "1"}
    init = next(r for r in runs["selected"] if r["iteration"] == "0")
    for row in (r for r in runs["selected"] if r["iteration"] == "1"):
        assert row["select_rollouts"] == "3" and float(row["select_s"]) > 0, row
        assert math.isfinite(float(row["select_score"]))  # the kept candidate's return on the selection episodes
        epoch = int(row["selected_epoch"])
        assert epoch in (-1, 49, 99), epoch  # the smoke preset's 100 epochs, candidates every 50
        if epoch == 99:
            assert row["mean_return"] == plain[row["method"]]["mean_return"], row["method"]
        if epoch == -1:
            assert row["mean_return"] == init["mean_return"], row["method"]
    assert all(r["selected_epoch"] == "" and math.isnan(float(r["select_score"])) for r in plain.values())


def test_bad_arguments_are_refused_with_a_message(tmp_path):
    cmd = [sys.executable, "-m", "mile_ros.cli.main", "benchmark", "--experiment", "single", "--out", str(tmp_path)]
    for extra, message in (
        (["--tasks", "drawer-close-v9"], "unknown task"),
        (["--methods", "dagger"], "unknown method"),
        (["--preset", "huge"], "unknown preset"),
        (["--methods", "mile@authors"], "key=value"),
        (["--human", "min_takeover_steps=0"], "at least 1"),
        (["--human", "sigma"], "key=value"),
        (["--methods", "rlif", "--select-by-rollouts", "2"], "RLIF trains by updates"),
        (["--select-by-rollouts", "-1"], "episodes >= 0"),
    ):
        proc = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "single.csv").exists()


def test_metaworld_continuous_methods_end_to_end(tmp_path):
    """The continuous path on a real Metaworld task: Gaussian MILE, RLIF's SAC and weighted BC.

    The simulated human gets its own probit scale and held takeovers here (``--human``), cached apart
    from the preset's.
    """
    methods = ["mile@continuous_form=authors", "rlif", "iwr"]
    cmd = [sys.executable, "-m", "mile_ros.cli.main", "benchmark", "--experiment", "single"]
    cmd += ["--tasks", "button-press-v3", "--preset", "smoke", "--seeds", "0", "--episodes", "1"]
    cmd += ["--methods", *methods, "--human", "sigma=20,min_takeover_steps=5", "--out", str(tmp_path)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read(tmp_path / "single.csv")
    assert not [r["error"] for r in rows if r["error"]]
    final = {r["method"]: r for r in rows if r["iteration"] == "1"}
    assert set(final) == set(methods)
    for row in final.values():
        assert 0.0 <= float(row["success_rate"]) <= 1.0
        assert int(row["steps_total"]) > 0 and float(row["train_s"]) > 0
        assert float(row["human_sigma"]) == 20.0 and float(row["human_cost"]) > 0
        assert row["human_options"] == "min_takeover_steps=5,sigma=20"
    cache = tmp_path / "cache" / "button-press-v3"
    human = json.loads((cache / "human-smoke-min_takeover_steps5-sigma20-s0.json").read_text())
    assert human["sigma"] == 20.0 and human["options"] == {"min_takeover_steps": 5, "sigma": 20}
    assert human["mental_path"].endswith("mental-smoke-min_takeover_steps5-sigma20-s0.pt")
