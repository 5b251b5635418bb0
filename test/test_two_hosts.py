"""The trainer on another host: finished bags travel over ROS 2 (recorder's offer -> bag_mirror), checked.

The ROS-free rules first (resume by offset, checksums, never overwriting, a ledger that survives
restarts), then two hosts: two network namespaces joined by a veth pair, each with its own address,
DDS between them over UDP only (no shared memory, so nothing passes outside the network). The robot's
namespace runs the simulated graph without a trainer; the trainer's namespace runs ``bag_mirror`` and
an unchanged ``trainer_node`` whose ``/trainer/train`` is remapped behind the mirror, and cannot see the
robot's run directory at all (an empty tmpfs is mounted over it there). One full iteration: episodes
recorded on one host, the update trained on the other from mirrored bags, the policy switched to it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from mile_ros.graph.bag_transfer import (
    BagMirror,
    BagOffer,
    OfferedBag,
    TransferError,
    pack_reply,
    unpack_reply,
)

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

ROOT = Path(__file__).resolve().parents[1]


# --- the ROS-free rules ------------------------------------------------------------------------------


def make_bag(root: Path, rel: str, mcap: bytes, finished: bool = True) -> Path:
    bag = root / rel
    bag.mkdir(parents=True)
    (bag / f"{bag.name}.mcap").write_bytes(mcap)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    if finished:
        (bag / "episode.json").write_text(json.dumps({"iteration": 0, "mode": "train"}))
    return bag


class Wire:
    """The offer answered through its packed replies, as the nodes exchange them; counts what is asked."""

    def __init__(self, offer: BagOffer, fail_after: int | None = None) -> None:
        self.offer, self.fail_after, self.asked = offer, fail_after, []

    def ask(self, **request) -> tuple[dict, bytes]:
        return unpack_reply(self.offer.answer({"client": "t", "id": 1, **request}))

    def catalog(self) -> list[OfferedBag]:
        return [OfferedBag.from_json(b) for b in self.ask(op="list")[0]["bags"]]

    def fetch(self, bag: str, name: str, offset: int, length: int):
        big = [a for a in self.asked if a[0].endswith(".mcap") and a[0] != "eval_000.mcap"]
        if self.fail_after is not None and len(big) >= self.fail_after:  # after that many chunks of the big file
            raise TransferError("link down")
        self.asked.append((name, offset))
        meta, payload = self.ask(op="chunk", bag=bag, file=name, offset=offset, length=length)
        assert "error" not in meta, meta
        return meta["size"], meta["sha256"], payload


def test_offer_lists_only_finished_bags_and_refuses_paths_outside(tmp_path):
    src = tmp_path / "bags"
    make_bag(src, "iter_000/train_000", b"x" * 10)
    make_bag(src, "iter_000/eval_000", b"y" * 10, finished=False)  # no sidecar yet: being closed
    busy = make_bag(src, "iter_001/train_000", b"z" * 10)
    (tmp_path / "secret").write_text("not a bag")
    (src / "iter_000" / "train_000" / "link.mcap").symlink_to(tmp_path / "secret")
    offer = BagOffer(src, busy=lambda: busy)
    wire = Wire(offer)
    [bag] = wire.catalog()
    assert bag.bag == "iter_000/train_000"
    assert [f.name for f in bag.files] == ["episode.json", "metadata.yaml", "train_000.mcap"]
    assert bag.files[2].sha256 == hashlib.sha256(b"x" * 10).hexdigest()
    for request in (
        {"bag": "../secret", "file": "secret"},
        {"bag": "iter_000/train_000", "file": "../../../secret"},
        {"bag": "iter_000/train_000", "file": "link.mcap"},
        {"bag": "iter_000/eval_000", "file": "eval_000.mcap"},
        {"bag": "iter_001/train_000", "file": "train_000.mcap"},
        {"bag": "/etc", "file": "passwd"},
    ):
        meta, payload = wire.ask(op="chunk", offset=0, length=10, **request)
        assert "error" in meta and payload == b"", (request, meta)
    assert "error" in wire.ask(op="delete")[0]
    meta, payload = wire.ask(op="chunk", bag="iter_000/train_000", file="train_000.mcap", offset=4, length=3)
    assert payload == b"xxx" and meta["size"] == 10
    assert unpack_reply(pack_reply({"a": "line\nbreak"}, b"\n\x00"))[1] == b"\n\x00"


def test_mirror_resumes_by_offset_verifies_and_is_idempotent_across_restarts(tmp_path):
    src, dst = tmp_path / "robot", tmp_path / "trainer"
    data = os.urandom(300_000)
    make_bag(src, "iter_000/train_000", data)
    make_bag(src, "iter_000/eval_000", os.urandom(1000))
    wire = Wire(BagOffer(src), fail_after=2)  # the link drops after two chunks of the episode
    mirror = BagMirror(dst, wire.fetch, chunk_bytes=64 * 1024)
    with pytest.raises(TransferError, match="link down"):
        mirror.sync(wire.catalog())
    assert (dst / "iter_000/eval_000").is_dir() and not (dst / "iter_000/train_000").exists()  # never half a bag
    # A new mirror (a restart) continues the .part file from its length, not from zero.
    wire.fail_after, wire.asked = None, []
    report = BagMirror(dst, wire.fetch, chunk_bytes=64 * 1024).sync(wire.catalog())
    assert report.fetched == ["iter_000/train_000"]  # eval_000 was whole already
    assert report.resumed_bytes > 0 and ("train_000.mcap", 0) not in wire.asked
    assert (dst / "iter_000/train_000/train_000.mcap").read_bytes() == data
    # Again, and after the trainer quarantined a bag: nothing is fetched or rewritten.
    (dst / "quarantine").mkdir()
    (dst / "iter_000/eval_000").rename(dst / "quarantine" / "eval_000")
    wire.asked = []
    again = BagMirror(dst, wire.fetch).sync(wire.catalog())
    assert again.fetched == [] and wire.asked == [] and not (dst / "iter_000/eval_000").exists()


def test_mirror_never_overwrites_and_rejects_a_corrupt_copy(tmp_path):
    src, dst = tmp_path / "robot", tmp_path / "trainer"
    make_bag(src, "iter_000/train_000", b"robot's episode")
    mine = make_bag(dst, "iter_000/train_000", b"another episode")
    wire = Wire(BagOffer(src))
    report = BagMirror(dst, wire.fetch).sync(wire.catalog())
    assert report.fetched == [] and len(report.conflicts) == 1
    assert (mine / "train_000.mcap").read_bytes() == b"another episode"
    # An identical copy already there (a lost ledger) is adopted without fetching.
    make_bag(src, "iter_000/train_001", b"same")
    make_bag(dst, "iter_000/train_001", b"same")
    wire.asked = []
    report = BagMirror(dst, wire.fetch).sync(wire.catalog())
    assert report.present == ["iter_000/train_001"] and wire.asked == []

    # Bytes changed on the way: the file is fetched again from zero once, then refused.
    make_bag(src, "iter_001/train_000", b"abcdef" * 1000)

    def corrupt(bag, name, offset, length):
        size, sha, data = wire.fetch(bag, name, offset, length)
        return size, sha, data.replace(b"a", b"A")

    with pytest.raises(TransferError, match="checksum mismatch"):
        BagMirror(dst, corrupt).sync(wire.catalog())
    assert not (dst / "iter_001").exists()


# --- two hosts -----------------------------------------------------------------------------------------


def sh(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr} (needs root / CAP_NET_ADMIN)"


@contextlib.contextmanager
def two_hosts():
    """Namespaces ``robot`` (10.231.9.1) and ``trainer`` (10.231.9.2) joined by a veth pair; removed
    again whatever happens."""
    tag = os.getpid() % 100000
    robot, trainer = f"mrob{tag}", f"mtrn{tag}"
    veth = (f"mr{tag}", f"mt{tag}")
    made = []
    try:
        for ns in (robot, trainer):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", veth[0], "netns", robot, "type", "veth", "peer", "name", veth[1], "netns", trainer)
        for ns, dev, addr in ((robot, veth[0], "10.231.9.1"), (trainer, veth[1], "10.231.9.2")):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            # DDS discovery's multicast goes out on the link (there is no default route).
            sh("ip", "netns", "exec", ns, "ip", "route", "add", "224.0.0.0/4", "dev", dev)
        yield {"robot": (robot, "10.231.9.1", veth[0]), "trainer": (trainer, "10.231.9.2", veth[1])}
    finally:
        for ns in made:  # deleting a namespace deletes its end of the pair, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def dds_env(domain: int, peer: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
        "ROS_STATIC_PEERS": peer,
        # UDP only: with shared memory, two "hosts" on one kernel could talk past the network.
        "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    return env


# Runs the given nodes with the project's launcher until the main one exits or a stop signal arrives.
LAUNCH = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from mile_ros.graph.launcher import GraphSignalled, NodeProcess, run_graph
    spec = json.loads(sys.argv[1])
    nodes = [NodeProcess(n["name"], [Path(f) for f in n["files"]], n.get("args", []), echo=n.get("echo", False))
             for n in spec["nodes"]]
    try:
        sys.exit(run_graph(nodes, spec["main"], Path(spec["logs"])))
    except GraphSignalled as exc:
        sys.exit(exc.exit_code)
    """
)


def launch(ns: str, spec: dict, env: dict[str, str], hide: Path | None = None) -> subprocess.Popen:
    """The launcher in namespace ``ns``; ``hide``: an empty tmpfs over that folder first (this host's
    disk does not have it)."""
    cmd = [sys.executable, "-c", LAUNCH, json.dumps(spec)]
    if hide is not None:
        script = 'mount -t tmpfs -o size=1m mile-hidden "$1" && [ -z "$(ls -A "$1")" ] && shift && exec "$@"'
        cmd = ["sh", "-c", script, "sh", str(hide), *cmd]
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *cmd],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the launcher stops its nodes (SIGINT, SIGTERM, SIGKILL)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    return out


def rx_bytes(ns: str, dev: str) -> int:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/statistics/rx_bytes"], capture_output=True, text=True
    )
    return int(done.stdout)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CAP_NET_ADMIN)")
def test_one_iteration_with_the_trainer_on_another_host(tmp_path):
    pytest.importorskip("rclpy")
    pytest.importorskip("metaworld")
    from test_session_sim import mediocre_policy

    from mile_ros.cli.sim import default_config, run_params
    from mile_ros.graph.bag_dataset import find_bags
    from mile_ros.learning import load_checkpoint
    from mile_ros.nodes.probe import unique_domain_id

    init = tmp_path / "init.pt"  # on both hosts, as the initial policy must be
    mediocre_policy(init)
    robot_run, trainer_run = tmp_path / "robot_run", tmp_path / "trainer_run"
    robot_run.mkdir()
    trainer_run.mkdir()
    config = yaml.safe_load(default_config().read_text())
    config["simulated_human"]["ros__parameters"]["target_intervention_rate"] = 0.9  # as test_session_sim
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(config))
    args = argparse.Namespace(
        task="drawer-open-v3",
        render=False,
        max_episode_steps=60,
        mental_rollouts=2,
        seed=0,
        epochs=5,
        iterations=1,
        episodes=1,
        eval_episodes=1,
    )
    params = run_params(args, robot_run, init)
    trainer_params = params.pop("trainer_node")
    trainer_params["ros__parameters"].update(
        bags_dir=str(trainer_run / "bags"), checkpoint_dir=str(trainer_run / "checkpoints"), threads=1
    )
    robot_yaml, trainer_yaml = tmp_path / "robot.yaml", tmp_path / "trainer.yaml"
    robot_yaml.write_text(yaml.safe_dump(params))
    mirror = {"bags_dir": str(trainer_run / "bags"), "sync_period_s": 2.0}
    trainer_yaml.write_text(yaml.safe_dump({"trainer_node": trainer_params, "bag_mirror": {"ros__parameters": mirror}}))
    files = [str(tmp_path / "sim.yaml")]
    robot_nodes = ["metaworld_bridge", "policy_node", "arbitration_node", "simulated_human", "recorder_node"]
    robot_spec = {
        "main": "session_manager",
        "logs": str(robot_run / "logs"),
        "nodes": [{"name": n, "files": [*files, str(robot_yaml)]} for n in robot_nodes]
        + [{"name": "session_manager", "files": [*files, str(robot_yaml)], "echo": True}],
    }
    trainer_spec = {
        "main": "bag_mirror",
        "logs": str(trainer_run / "logs"),
        "nodes": [
            # Unchanged, its service moved behind the mirror's /trainer/train.
            {
                "name": "trainer_node",
                "files": [*files, str(trainer_yaml)],
                "args": ["-r", "/trainer/train:=/trainer/train_local"],
            },
            {"name": "bag_mirror", "files": [str(trainer_yaml)]},
        ],
    }
    domain = unique_domain_id()
    with two_hosts() as hosts:
        (robot_ns, robot_ip, _), (trainer_ns, trainer_ip, trainer_dev) = hosts["robot"], hosts["trainer"]
        trainer = launch(trainer_ns, trainer_spec, dds_env(domain, robot_ip), hide=robot_run)
        robot = None
        try:
            robot = launch(robot_ns, robot_spec, dds_env(domain, trainer_ip))
            deadline = time.monotonic() + 600
            # Until the session ends; a trainer's host that died, or a hang, stops it at once.
            while robot.poll() is None and trainer.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            trainer_alive = trainer.poll() is None
            robot_out = stop(robot)
        finally:
            if robot is not None and robot.poll() is None:
                stop(robot)
            trainer_out = stop(trainer)
        received = rx_bytes(trainer_ns, trainer_dev)
    logs = {p.name: p.read_text(errors="replace")[-3000:] for p in (trainer_run / "logs").glob("*.log")}
    assert robot.returncode == 0, robot_out[-4000:] + trainer_out[-2000:] + json.dumps(logs)[-4000:]
    assert trainer_alive, trainer_out[-3000:]
    assert "iteration 0: policy-alone success rate" in robot_out and "update 1 on" in robot_out

    # The episodes were recorded on the robot's host and reached the trainer's, byte for byte.
    robot_bags = [b.relative_to(robot_run / "bags").as_posix() for b in find_bags(robot_run / "bags")]
    assert robot_bags == ["iter_000/eval_000", "iter_000/train_000", "iter_001/eval_000"]
    mirrored = sorted(b.relative_to(trainer_run / "bags").as_posix() for b in find_bags(trainer_run / "bags"))
    assert mirrored[:2] == ["iter_000/eval_000", "iter_000/train_000"]
    total = 0
    for rel in mirrored[:2]:
        for f in (robot_run / "bags" / rel).iterdir():
            assert digest(trainer_run / "bags" / rel / f.name) == digest(f), f
            total += f.stat().st_size
    # ...over the link between the namespaces (DDS on UDP only): at least their size crossed it.
    assert received > total

    # The update was trained on the trainer's host from the mirrored bags, and the robot switched to it.
    update = trainer_run / "checkpoints" / "update_001.pt"
    assert load_checkpoint(update).meta["rows"] > 0
    state = json.loads((robot_run / "session.json").read_text())
    assert state["checkpoints"] == {"1": str(update)}
    assert next(e for e in state["episodes"] if e["name"] == "iter_001/eval_000")["checkpoint"] == str(update)
    mirror_log = (trainer_run / "logs" / "bag_mirror.log").read_text()
    assert "mirrored into" in mirror_log and "fetched" in mirror_log
    assert not (robot_run / "checkpoints" / "update_001.pt").exists()  # trained there, not here
