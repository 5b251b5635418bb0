"""trainer_node as a process: train on the bags, skip a corrupt one by name, announce, never overwrite;
update n follows the bags' iteration n - 1 (named and seeded by it, reused on a resume, never trained
twice, not even by two trainers at once); Ctrl-C mid-update stops it at once with nothing published."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

import torch
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_srvs.srv import Trigger
from test_graph_bags import OBS_DIM, write_episode

from mile_ros.graph.training import train_from_bags, trainer_config
from mile_ros.learning import MileCheckpoint, Spec, build_policy, load_checkpoint
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id
from mile_ros.nodes.trainer_node import yaml_defaults
from mile_ros.seeds import update_seed

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

SPEC = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
SETTINGS = {"epochs": 3, "batch_size": 16, "cost": 1.0, "sigma": 1.0, "threads": 1}
# Long enough that a signal sent a second into training lands mid-update even on a quiet machine.
LONG_EPOCHS = 600


def write_iteration(bags: Path, iteration: int, episodes: int = 3) -> None:
    """Intervention episodes of one session iteration, their sidecars saying so (as the recorder's)."""
    for k in range(episodes):
        bag = bags / f"iter_{iteration:03d}" / f"train_{k:03d}"
        write_episode(bag, 15, human_steps={2, 3, 9}, seed=10 * iteration + k)
        meta = json.loads((bag / "episode.json").read_text())
        (bag / "episode.json").write_text(json.dumps({**meta, "iteration": iteration}))


def setup_run(tmp_path: Path) -> Path:
    """Iteration 0's bags and an initial policy (once per run); returns the initial checkpoint."""
    init = tmp_path / "init.pt"
    if not init.exists():
        write_iteration(tmp_path / "bags", 0)
        MileCheckpoint(SPEC, build_policy(SPEC.stacked_dim, 4, False, (16,))).save(init)
    return init


def settings_for(tmp_path: Path, **params) -> dict:
    return {
        "bags_dir": str(tmp_path / "bags"),
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "initial_checkpoint": str(tmp_path / "init.pt"),
        **SETTINGS,
        **params,
    }


@contextmanager
def trainer(tmp_path, **params) -> Iterator[tuple[Path, Probe, NodeProcess]]:
    """A trainer node on iteration 0's bags; stopped (with its probe) on leaving."""
    init = setup_run(tmp_path)
    domain = unique_domain_id()
    probe, node = Probe(domain), NodeProcess("trainer_node", domain, settings_for(tmp_path, **params), tmp_path)
    try:
        yield init, probe, node
    finally:
        node.stop()
        probe.close()


def train(probe: Probe, timeout: float = 180) -> dict:
    res = probe.call("/trainer/train", Trigger, timeout=timeout)
    assert res.success, res.message
    return json.loads(res.message)


def record(tmp_path: Path, n: int) -> dict:
    path = tmp_path / "ckpt" / f"update_{n:03d}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_state(tmp_path: Path, n: int, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while record(tmp_path, n).get("state") != state:
        assert time.monotonic() < deadline, f"update {n} never reached {state!r}: {record(tmp_path, n)}"
        time.sleep(0.05)


def wait_output(node: NodeProcess, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in node.output():
        assert node.alive() and time.monotonic() < deadline, f"{text!r} never logged:\n{node.output()[-2000:]}"
        time.sleep(0.05)


def wait_future(future, timeout: float = 60.0):
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout), "no answer"
    return future.result()


def in_background(fn) -> dict:
    """Run ``fn`` in a thread; the returned dict gets its result or exception."""
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as exc:  # reported by the test that reads it
            out["error"] = exc

    out["thread"] = threading.Thread(target=run, daemon=True)
    out["thread"].start()
    return out


def test_trainer_node_updates_and_announces(tmp_path):
    bags = tmp_path / "bags"
    (bags / "broken").mkdir(parents=True)
    (bags / "broken" / "broken.mcap").write_bytes(b"\x89MCAP0\r\n garbage")
    with trainer(tmp_path) as (init, probe, node):
        probe.listen("/mile/checkpoint")
        first = train(probe)
        assert first["checkpoint"] == str(tmp_path / "ckpt" / "update_001.pt") and first["rows"] == 45
        assert (first["update"], first["iteration"], first["seed"], first["reused"]) == (1, 0, 1, False)
        assert [s[0] for s in first["skipped"]] == [str(bags / "broken")]
        announced = probe.wait_count("/mile/checkpoint", 1)[0].data
        assert announced == first["checkpoint"]
        ckpt = load_checkpoint(first["checkpoint"], expected=SPEC)
        assert ckpt.mental is not None and ckpt.meta["source_checkpoint"] == str(init)
        assert ckpt.meta["config"]["seed"] == ckpt.meta["update_seed"] == update_seed(0, 1)
        assert record(tmp_path, 1)["state"] == "done"
        before = (tmp_path / "ckpt" / "update_001.pt").read_bytes()
        # The same bags call for the same update: it is announced again, not trained twice.
        again = train(probe)
        assert again["checkpoint"] == first["checkpoint"] and again["reused"] and again["rows"] == 45
        assert probe.wait_count("/mile/checkpoint", 2)[1].data == first["checkpoint"]
        # The next iteration's bags call for update 2, seeded by its number.
        write_iteration(bags, 1)
        second = train(probe)
        assert second["checkpoint"].endswith("update_002.pt") and second["rows"] == 90
        meta = load_checkpoint(second["checkpoint"]).meta
        # by default every update trains a clone of the initial policy on all the bags
        assert meta["source_checkpoint"] == str(init)
        assert meta["config"]["seed"] == update_seed(0, 2) and meta["iteration"] == 1
        assert (tmp_path / "ckpt" / "update_001.pt").read_bytes() == before
        assert probe.wait_count("/mile/checkpoint", 3)[2].data == second["checkpoint"]
        assert "skipped bag" in node.output() and "broken" in node.output()
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("update_*.pt")) == ["update_001.pt", "update_002.pt"]


def test_trainer_node_trains_a_baseline_from_bags(tmp_path):
    """method: any baseline trains on the robot's graph as in the benchmark (same function, same seed)."""
    init = setup_run(tmp_path)
    params = {k: v for k, v in settings_for(tmp_path, method="iwr").items() if k not in ("cost", "sigma")}
    domain = unique_domain_id()
    probe, node = Probe(domain), NodeProcess("trainer_node", domain, params, tmp_path)
    try:
        first = train(probe)
        assert first["method"] == "iwr" and first["rows"] == 45 and first["seed"] == update_seed(0, 1)
        ckpt = load_checkpoint(first["checkpoint"], expected=SPEC)
        assert ckpt.meta["method"] == ckpt.meta["trainer"] == "iwr" and ckpt.mental is None
        assert "training update 1 by iwr" in node.output()
        # the same weights as the one training function gives outside the graph with the same settings
        config = trainer_config({**yaml_defaults(), **params}, 1)
        ref = train_from_bags(tmp_path / "bags", init, tmp_path / "reference.pt", config, threads=1, method="iwr")
        want = load_checkpoint(ref.checkpoint).policy.state_dict()
        for key, value in ckpt.policy.state_dict().items():
            assert torch.equal(want[key], value), key
        # Set at run time: applied from the next update; a setting IWR does not have is refused.
        client = AsyncParameterClient(probe.node, "trainer_node")
        assert client.wait_for_services(timeout_sec=60)
        results = wait_future(client.set_parameters([Parameter("epochs", value=2), Parameter("cost", value=1.0)]))
        assert results.results[0].successful
        assert not results.results[1].successful and "not a setting of iwr" in results.results[1].reason
        write_iteration(tmp_path / "bags", 1)
        second = train(probe)
        assert load_checkpoint(second["checkpoint"]).meta["epochs_run"] == 2
    finally:
        node.stop()
        probe.close()
    # MILE's own settings are refused for a baseline, by name, before anything trains
    with trainer(tmp_path, method="iwr", checkpoint_dir=str(tmp_path / "refused")) as (_, _, node):
        assert node.proc.wait(60) != 0
        assert "cost, sigma: not a setting of iwr" in node.output()


def test_trainer_node_can_continue_from_its_latest_update(tmp_path):
    with trainer(tmp_path, train_from="previous") as (_, probe, _):
        first = train(probe)
        write_iteration(tmp_path / "bags", 1)
        second = train(probe)
        assert load_checkpoint(second["checkpoint"]).meta["source_checkpoint"] == first["checkpoint"]


def test_trainer_node_refuses_an_unknown_train_from(tmp_path):
    with trainer(tmp_path, train_from="scratch") as (_, _, node):
        assert node.proc.wait(60) != 0
        assert "train_from: 'scratch' is not one of initial, previous" in node.output()
        assert "[TrainerNode (starting)] fatal:" in node.output()  # named, though it never came up
        assert not (tmp_path / "ckpt").exists()


def test_an_update_finished_before_a_stop_is_reused_by_the_resume(tmp_path):
    """The fault: an update finished while the session stopped, so the session never recorded it; the
    resume asked again and got a second update (update_002, seed 2) for the same iteration."""
    with trainer(tmp_path) as (_, probe, _):
        first = train(probe)
    before = Path(first["checkpoint"]).read_bytes()
    with trainer(tmp_path) as (_, probe, node):  # a new process on the same run: the resume
        probe.listen("/mile/checkpoint")
        again = train(probe)
        assert again["reused"] and again["checkpoint"] == first["checkpoint"] and again["seed"] == 1
        assert probe.wait_count("/mile/checkpoint", 1)[0].data == first["checkpoint"]
        assert "reusing it" in node.output()
    assert [p.name for p in (tmp_path / "ckpt").glob("update_*.pt")] == ["update_001.pt"]
    assert Path(first["checkpoint"]).read_bytes() == before


def test_ctrl_c_mid_update_stops_at_once_and_the_resume_trains_it_again_alike(tmp_path):
    with trainer(tmp_path, epochs=LONG_EPOCHS) as (init, probe, node):
        call = in_background(lambda: probe.call("/trainer/train", Trigger, timeout=120))
        wait_output(node, "update 1: fitting on 45 steps")
        time.sleep(0.5)  # well into the update's minibatches
        assert node.alive() and not (tmp_path / "ckpt" / "update_001.pt").exists()
        sent = time.monotonic()
        node.proc.send_signal(signal.SIGINT)
        code = node.proc.wait(30)
        took = time.monotonic() - sent
        output = node.output()
    # a minibatch, then the process's teardown (slow on a machine at load 10, as this one can be)
    assert took < 4.0, f"the trainer took {took:.1f} s to stop:\n{output[-2000:]}"
    assert code == 0, output[-2000:]
    assert "update interrupted, nothing published" in output
    ckpt_dir = tmp_path / "ckpt"
    # Nothing partial: no checkpoint, no staged or temporary file; the record says what happened.
    assert sorted(p.name for p in ckpt_dir.iterdir() if not p.name.endswith(".lock")) == ["update_001.json"]
    rec = record(tmp_path, 1)
    assert rec["state"] == "interrupted" and rec["seed"] == update_seed(0, 1) and rec["iteration"] == 0
    call["thread"].join(30)
    # The resume trains the same update with the same seed, and gets what an uninterrupted run gets.
    with trainer(tmp_path, epochs=LONG_EPOCHS) as (_, probe, node):
        resumed = train(probe)
        assert "was interrupted when its trainer stopped: training it again" in node.output()
    assert resumed["checkpoint"] == str(ckpt_dir / "update_001.pt") and resumed["seed"] == update_seed(0, 1)
    assert not resumed["reused"] and record(tmp_path, 1)["state"] == "done"
    s = {**yaml_defaults(), **settings_for(tmp_path, epochs=LONG_EPOCHS)}
    config = trainer_config(s, 1)  # what the node trains update 1 with
    reference = train_from_bags(tmp_path / "bags", init, tmp_path / "reference.pt", config, threads=1)
    got, want = load_checkpoint(resumed["checkpoint"]), load_checkpoint(reference.checkpoint)
    for key, value in want.policy.state_dict().items():
        assert torch.equal(got.policy.state_dict()[key], value), key


def test_two_trainers_on_one_run_train_an_update_once(tmp_path):
    """Two trainers (e.g. one orphaned by a crashed launcher and the resume's) asked for the same update:
    the second waits for the first's claim and reuses its checkpoint; nothing is overwritten."""
    init = setup_run(tmp_path)
    assert init.exists()
    domains = unique_domain_id(), unique_domain_id()
    probes = [Probe(d) for d in domains]
    nodes = []
    for i, d in enumerate(domains):
        (tmp_path / f"t{i}").mkdir()  # a log folder each
        nodes.append(NodeProcess("trainer_node", d, settings_for(tmp_path, epochs=LONG_EPOCHS), tmp_path / f"t{i}"))
    try:
        first = in_background(lambda: train(probes[0]))
        wait_state(tmp_path, 1, "training")
        second = in_background(lambda: train(probes[1]))
        for call in (first, second):
            call["thread"].join(240)
            assert "result" in call, call.get("error")
        a, b = first["result"], second["result"]
        assert a["checkpoint"] == b["checkpoint"] == str(tmp_path / "ckpt" / "update_001.pt")
        assert (a["reused"], b["reused"]) == (False, True)
        assert "training update 1" in nodes[0].output() and "training update" not in nodes[1].output()
        assert "for another trainer's claim on update 1" in nodes[1].output()
    finally:
        for n in nodes:
            n.stop()
        for p in probes:
            p.close()
    assert [p.name for p in (tmp_path / "ckpt").glob("update_*.pt")] == ["update_001.pt"]
    assert record(tmp_path, 1)["state"] == "done"
