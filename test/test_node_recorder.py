"""recorder_node as a process: a lifecycle node, one MCAP bag per configure -> activate -> deactivate, with
metadata; the bag is named at configure and cannot be moved until cleanup; a SIGKILL loses nothing written."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")


from mile_ros.graph.bag_dataset import build_dataset, episode_steps
from mile_ros.graph.bag_episode import BagError, read_bag
from mile_ros.graph.topics import ACTION_NAMES
from mile_ros.nodes.common import vector_msg
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier


@pytest.fixture
def recorder(tmp_path):
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess("recorder_node", domain, {"output_dir": str(tmp_path), "drain_s": 1.0}, tmp_path)
    for topic in (
        "/mile/observation",
        "/mile/proposed_action",
        "/mile/executed_action",
        "/mile/human_action",
        "/episode/end",
    ):
        probe.wait_matched(topic)
    yield probe, node, tmp_path
    node.stop()
    probe.close()


def publish_step(probe, stamp, obs, robot, human=None):
    probe.publish("/mile/observation", vector_msg(stamp, [f"obs_{k}" for k in range(len(obs))], obs))
    probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, robot))
    if human is None:
        probe.publish("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, robot, "robot"))
    else:
        probe.publish("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, human, "human"))
        probe.publish("/mile/human_action", vector_msg(stamp, ACTION_NAMES, human, "human"))


def stop(probe, bag) -> dict:
    """deactivate (waits for the episode's last messages, closes the bag) and cleanup; the summary."""
    return probe.stop_recording("recorder_node", str(bag))


def test_records_an_episode_with_metadata(recorder):
    probe, _, tmp = recorder
    bag = tmp / "it0" / "train_000"
    assert probe.lifecycle_state("recorder_node") == "unconfigured"
    assert not probe.transition("recorder_node", "activate")  # nothing configured: nothing recorded
    probe.record("recorder_node", str(bag), {"iteration": 0, "mode": "train"})
    assert probe.lifecycle_state("recorder_node") == "active"
    # While configured, the bag's name and metadata cannot change: the bag recorded is the one configured.
    for name, value in (("bag_path", str(tmp / "elsewhere")), ("episode_info", "{}")):
        with pytest.raises(RuntimeError, match="read at configure"):
            probe.set_params("recorder_node", {name: value})
    assert not probe.transition("recorder_node", "configure")  # one episode at a time
    rng = np.random.default_rng(0)
    published = []
    for i in range(40):
        stamp = 10**9 + i * 5 * 10**7
        obs, robot = rng.normal(size=6), rng.uniform(-1, 1, 4)
        human = rng.uniform(-1, 1, 4) if 10 <= i < 15 else None
        publish_step(probe, stamp, obs, robot, human)
        published.append((stamp, obs, robot, human))
        time.sleep(0.002)
    end = 10**9 + 40 * 5 * 10**7
    probe.publish("/episode/end", vector_msg(end, ["steps", "success", "return"], [40, 1.0, 3.0], "success"))
    result = stop(probe, bag)
    assert result["steps"] == 40 and result["interventions"] == 5 and result["success"] is True
    assert probe.lifecycle_state("recorder_node") == "unconfigured"
    assert not (tmp / "elsewhere").exists()
    read = read_bag(bag)
    assert read.complete and read.metadata["iteration"] == 0 and read.metadata["end_reason"] == "success"
    assert read.metadata["complete"] is True and read.metadata["steps_complete"] is True
    steps = episode_steps(read)
    assert list(steps.stamps) == [p[0] for p in published]
    np.testing.assert_allclose(steps.observation, np.array([p[1] for p in published]))
    assert list(steps.intervention) == [p[3] is not None for p in published]
    # An existing bag folder is never overwritten: configure refuses it.
    probe.set_params("recorder_node", {"bag_path": str(bag), "episode_info": "{}"})
    assert not probe.transition("recorder_node", "configure")
    assert probe.lifecycle_state("recorder_node") == "unconfigured"
    assert read_bag(bag).metadata["iteration"] == 0


def test_killed_recorder_leaves_a_readable_bag(recorder):
    probe, node, tmp = recorder
    bag = tmp / "killed"
    probe.record("recorder_node", str(bag))
    for i in range(30):
        publish_step(probe, 10**9 + i, np.full(3, float(i)), np.zeros(4))

    def on_disk() -> int:
        try:
            return len(read_bag(bag).topic("/mile/executed_action"))
        except BagError:
            return 0

    deadline = time.monotonic() + 20
    while on_disk() < 30:  # the recorder flushes every message: all of them reach the file
        assert time.monotonic() < deadline, f"only {on_disk()} of 30 commands on disk"
        time.sleep(0.05)
    node.kill()
    read = read_bag(bag)
    assert not read.complete
    assert [m.decode().position[0] for m in read.topic("/mile/observation")] == [float(i) for i in range(30)]
    assert len(episode_steps(read).stamps) == 30


def test_bag_path_outside_the_output_dir_is_refused(recorder):
    """Whoever sets bag_path (any process on the domain can), the recorder writes only under output_dir."""
    probe, node, tmp = recorder
    outside = tmp.parent / f"{tmp.name}-outside"
    outside.mkdir()
    (tmp / "link").symlink_to(outside, target_is_directory=True)
    for bad in (
        outside / "bag",  # an absolute path elsewhere
        tmp / ".." / outside.name / "bag",  # .. out of it
        tmp / "link" / "bag",  # a symlink out of it
        tmp,  # output_dir itself is not a bag folder
    ):
        with pytest.raises(RuntimeError, match="outside the recorder's output_dir"):
            probe.set_params("recorder_node", {"bag_path": str(bad)})
    with pytest.raises(RuntimeError, match="read-only"):
        probe.set_params("recorder_node", {"output_dir": str(outside)})
    # A path that was inside when set, made a link out of it before configure: checked again then.
    probe.set_params("recorder_node", {"bag_path": str(tmp / "later" / "bag"), "episode_info": "{}"})
    (tmp / "later").symlink_to(outside, target_is_directory=True)
    assert not probe.transition("recorder_node", "configure")
    assert "outside the recorder's output_dir" in node.output()
    # ... and inside at configure, made a link out of it before activate: checked again when opened.
    probe.set_params("recorder_node", {"bag_path": str(tmp / "later2" / "bag")})
    assert probe.transition("recorder_node", "configure")
    (tmp / "later2").symlink_to(outside, target_is_directory=True)
    assert not probe.transition("recorder_node", "activate")
    assert probe.lifecycle_state("recorder_node") == "inactive"
    assert probe.transition("recorder_node", "cleanup")
    assert list(outside.iterdir()) == []
    # The session goes on: a bag inside is recorded as before.
    probe.record("recorder_node", str(tmp / "it0" / "train_000"))
    publish_step(probe, 10**9, np.zeros(3), np.zeros(4))
    end = vector_msg(10**9 + 5 * 10**7, ["steps", "success", "return"], [1, 0.0, 0.0], "failure")
    probe.publish("/episode/end", end)
    assert stop(probe, tmp / "it0" / "train_000")["end_reason"] == "failure"
    assert read_bag(tmp / "it0" / "train_000").complete and list(outside.iterdir()) == []
    assert node.alive(), node.output()[-2000:]


def test_recorder_stopped_mid_episode_marks_its_bag_incomplete(recorder):
    """A recorder stopped (SIGINT) mid-episode closes a readable bag that is never trained on."""
    probe, node, tmp = recorder
    bag = tmp / "iter_000" / "train_000"
    probe.record("recorder_node", str(bag), {"mode": "train"})
    for i in range(20):
        publish_step(probe, 10**9 + i * 5 * 10**7, np.full(3, float(i)), np.zeros(4))

    def on_disk() -> int:
        try:
            return len(read_bag(bag).topic("/mile/executed_action"))
        except BagError:  # nothing flushed yet
            return 0

    deadline = time.monotonic() + 20
    while on_disk() < 20:
        assert time.monotonic() < deadline, f"only {on_disk()} of 20 commands on disk"
        time.sleep(0.05)
    assert node.stop() == 0, node.output()[-2000:]
    read = read_bag(bag)
    assert read.complete and (bag / "metadata.yaml").is_file()  # closed: rosbag2 readers open it
    assert read.metadata["complete"] is False and "stopped before the episode ended" in read.metadata["interrupted"]
    assert read.metadata["steps_complete"] is False  # no episode end arrived
    assert len(episode_steps(read).stamps) == 20  # every step kept
    report = build_dataset([bag])
    assert report.used == [] and [p for p, _ in report.interrupted] == [bag]


def test_an_episode_stopped_before_its_end_is_kept_but_never_trained_on(recorder):
    """deactivate without an episode end (the session manager's episode timeout): the bag is closed
    with every step, and marked so the trainer leaves it out."""
    probe, _, tmp = recorder
    bag = tmp / "iter_000" / "train_000"
    probe.record("recorder_node", str(bag), {"mode": "train"})
    for i in range(15):
        publish_step(probe, 10**9 + i * 5 * 10**7, np.full(3, float(i)), np.zeros(4))
        time.sleep(0.002)
    # Without an episode end, deactivate waits only drain_s (1 s here): on a loaded machine, let every
    # step reach the bag first (it is flushed message by message).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if len(episode_steps(read_bag(bag)).stamps) == 15:
                break
        except BagError:  # nothing flushed yet
            pass
        time.sleep(0.1)
    assert stop(probe, bag)["complete"] is False
    read = read_bag(bag)
    assert read.metadata["complete"] is False and "stopped before it ended" in read.metadata["interrupted"]
    assert len(episode_steps(read).stamps) == 15
    report = build_dataset([bag])
    assert report.used == [] and [p for p, _ in report.interrupted] == [bag]
