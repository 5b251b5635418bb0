"""trainer_node as a process: train on the bags, skip a corrupt one by name, announce, never overwrite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from std_srvs.srv import Trigger
from test_graph_bags import OBS_DIM, write_episode

from mile_ros.learning import MileCheckpoint, Spec, build_policy, load_checkpoint
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

SPEC = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)


@contextmanager
def trainer(tmp_path, **params) -> Iterator[tuple[Path, Probe, NodeProcess]]:
    """A trainer node on three small episode bags; stopped (with its probe) on leaving."""
    bags = tmp_path / "bags"
    for k in range(3):
        write_episode(bags / f"train_{k:03d}", 15, human_steps={2, 3, 9}, seed=k)
    init = tmp_path / "init.pt"
    MileCheckpoint(SPEC, build_policy(SPEC.stacked_dim, 4, False, (16,))).save(init)
    domain = unique_domain_id()
    settings = {
        "bags_dir": str(bags),
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "initial_checkpoint": str(init),
        "epochs": 3,
        "batch_size": 16,
        "cost": 1.0,
        "sigma": 1.0,
        **params,
    }
    probe, node = Probe(domain), NodeProcess("trainer_node", domain, settings, tmp_path)
    try:
        yield init, probe, node
    finally:
        node.stop()
        probe.close()


def test_trainer_node_updates_and_announces(tmp_path):
    bags = tmp_path / "bags"
    (bags / "broken").mkdir(parents=True)
    (bags / "broken" / "broken.mcap").write_bytes(b"\x89MCAP0\r\n garbage")
    with trainer(tmp_path) as (init, probe, node):
        probe.listen("/mile/checkpoint")
        res = probe.call("/trainer/train", Trigger, timeout=120)
        assert res.success, res.message
        first = json.loads(res.message)
        assert first["checkpoint"] == str(tmp_path / "ckpt" / "update_001.pt") and first["rows"] == 45
        assert [s[0] for s in first["skipped"]] == [str(bags / "broken")]
        announced = probe.wait_count("/mile/checkpoint", 1)[0].data
        assert announced == first["checkpoint"]
        ckpt = load_checkpoint(first["checkpoint"], expected=SPEC)
        assert ckpt.mental is not None and ckpt.meta["source_checkpoint"] == str(init)
        before = (tmp_path / "ckpt" / "update_001.pt").read_bytes()
        second = json.loads(probe.call("/trainer/train", Trigger, timeout=120).message)
        assert second["checkpoint"].endswith("update_002.pt")
        # by default every update trains a clone of the initial policy on all the bags
        assert load_checkpoint(second["checkpoint"]).meta["source_checkpoint"] == str(init)
        assert (tmp_path / "ckpt" / "update_001.pt").read_bytes() == before
        assert probe.wait_count("/mile/checkpoint", 2)[1].data == second["checkpoint"]
        assert "skipped bag" in node.output() and "broken" in node.output()


def test_trainer_node_can_continue_from_its_latest_update(tmp_path):
    with trainer(tmp_path, train_from="previous") as (_, probe, _):
        first = json.loads(probe.call("/trainer/train", Trigger, timeout=120).message)
        second = json.loads(probe.call("/trainer/train", Trigger, timeout=120).message)
        assert load_checkpoint(second["checkpoint"]).meta["source_checkpoint"] == first["checkpoint"]


def test_trainer_node_refuses_an_unknown_train_from(tmp_path):
    with trainer(tmp_path, train_from="scratch") as (_, _, node):
        assert node.proc.wait(60) != 0
        assert "train_from: 'scratch' is not one of initial, previous" in node.output()
        assert not (tmp_path / "ckpt").exists()
