"""graph.training without ROS: an interrupted update leaves nothing behind, a published checkpoint is never
replaced, the iteration comes from the bags' sidecars, and torch threads follow the cores actually free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from test_graph_bags import OBS_DIM, write_episode

from mile_ros.baselines import method_config
from mile_ros.graph.bag_episode import _set_custom_data
from mile_ros.graph.training import (
    TrainingError,
    TrainingInterruptedError,
    choose_threads,
    free_cores,
    publish_exclusive,
    session_iteration,
    train_from_bags,
    trainer_config,
)
from mile_ros.learning import MileCheckpoint, MileConfig, Spec, build_policy, load_checkpoint
from mile_ros.seeds import update_seed

SPEC = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)


@pytest.fixture
def run(tmp_path):
    for k in range(2):
        write_episode(tmp_path / "bags" / f"train_{k:03d}", 15, human_steps={2, 3}, seed=k)
    MileCheckpoint(SPEC, build_policy(SPEC.stacked_dim, 4, False, (16,))).save(tmp_path / "init.pt")
    return tmp_path


def test_a_stop_mid_update_ends_it_within_a_minibatch_and_writes_nothing(run):
    calls = []

    def should_stop() -> bool:
        calls.append(time.monotonic())
        return len(calls) > 20

    out = run / "ckpt" / "update_001.pt"
    with pytest.raises(TrainingInterruptedError):
        train_from_bags(run / "bags", run / "init.pt", out, MileConfig(epochs=500, batch_size=8), 1, None, should_stop)
    assert len(calls) == 21  # checked before every minibatch; none ran after the stop
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_published_checkpoint_is_never_replaced(tmp_path):
    out, staged = tmp_path / "update_001.pt", tmp_path / ".update_001.pt.staged"
    out.write_bytes(b"the first trainer's update")
    staged.write_bytes(b"a second trainer's update")
    with pytest.raises(TrainingError, match="exists already"):
        publish_exclusive(staged, out)
    assert out.read_bytes() == b"the first trainer's update" and not staged.exists()
    fresh = tmp_path / ".update_002.pt.staged"
    fresh.write_bytes(b"new")
    publish_exclusive(fresh, tmp_path / "update_002.pt")
    assert (tmp_path / "update_002.pt").read_bytes() == b"new" and not fresh.exists()


def test_the_iteration_comes_from_the_training_episodes_sidecars(run):
    bags = run / "bags"
    assert session_iteration(bags) == 0  # write_episode's sidecars say iteration 0
    for name, meta in (
        ("iter_002/train_000", {"mode": "train", "iteration": 2}),
        ("iter_003/eval_000", {"mode": "eval", "iteration": 3}),  # evaluation: not an update's data
        ("iter_004/train_000.interrupted0", {"mode": "train", "iteration": 4}),  # set aside
        ("iter_005/train_000", {"mode": "train", "iteration": 5, "interrupted": "the session stopped"}),
    ):
        write_episode(bags / name, 5, seed=1)
        (bags / name / "episode.json").write_text(json.dumps(meta))
    assert session_iteration(bags) == 2
    assert session_iteration(run / "nowhere") is None
    # A crash between metadata.yaml and the sidecar: the iteration is read where the dataset reads it.
    lost = bags / "iter_006" / "train_000"
    write_episode(lost, 5, seed=2)
    _set_custom_data(lost, {"mode": "train", "iteration": 6})
    (lost / "episode.json").unlink()
    assert session_iteration(bags) == 6


def test_an_updates_settings_are_the_methods_own_with_the_parameters_that_are_set():
    config = trainer_config({"epochs": 7, "cost": 9.0, "lr": None, "seed": 2, "bags_dir": "elsewhere"}, update=3)
    default = method_config("mile")
    assert config.epochs == 7 and config.cost == 9.0 and config.seed == update_seed(2, 3)
    assert config.lr == default.lr  # unset: the method's own
    assert config.policy_std == default.policy_std and config.learn_sigma == default.learn_sigma
    paper = trainer_config({"options": "paper,sigma=3"}, update=1)
    assert paper.policy_std == "state" and paper.sigma == 3.0 and paper.cost == 60.0
    peg = trainer_config({"task": "peg-insert-side-v3", "method": "iwr"}, update=1)
    assert peg == method_config("iwr", "peg-insert-side-v3", seed=update_seed(0, 1))
    with pytest.raises(ValueError, match="cost: not a setting of iwr"):
        trainer_config({"method": "iwr", "cost": 1.0}, update=1)
    with pytest.raises(ValueError, match="unknown method"):
        trainer_config({"method": "dagger"}, update=1)
    with pytest.raises(ValueError, match="unknown setting"):
        trainer_config({"options": "epochz=3"}, update=1)


def test_any_method_trains_from_bags_and_says_which(run):
    out = run / "ckpt" / "update_001.pt"
    config = trainer_config({"method": "iwr", "epochs": 2, "batch_size": 8}, 1)
    outcome = train_from_bags(run / "bags", run / "init.pt", out, config, threads=1, method="iwr")
    meta = load_checkpoint(out).meta
    assert meta["method"] == meta["trainer"] == "iwr" and meta["rows"] == outcome.rows == 30
    assert meta["epochs_run"] == 2 and outcome.best_epoch == 1
    with pytest.raises(TypeError, match="IWRConfig"):  # a config for another method is refused
        train_from_bags(run / "bags", run / "init.pt", run / "x.pt", MileConfig(epochs=1), threads=1, method="iwr")
    assert not (run / "x.pt").exists()


def test_threads_follow_the_cores_actually_free():
    cores = len(os.sched_getaffinity(0))
    assert choose_threads(1) == 1 and 1 <= choose_threads(64) <= cores
    # Busy loops on every core and more (bounded in time even if this test dies): nothing is free.
    busy = "import time\nd = time.monotonic() + 20\nwhile time.monotonic() < d: pass"
    load = [subprocess.Popen([sys.executable, "-c", busy]) for _ in range(2 * cores)]
    try:
        time.sleep(0.5)
        assert free_cores(0.5) < 0.5
        assert choose_threads(cores) == 1
    finally:
        for p in load:
            p.kill()
            p.wait()
