"""Episode bags: rosbags MCAP round trip, a killed writer, the stamp join, corrupt bags, the trainer."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Reader
from std_msgs.msg import Bool

from mile_ros.graph.bag_dataset import build_dataset, episode_steps, find_bags
from mile_ros.graph.bag_episode import EpisodeBagWriter, read_bag
from mile_ros.graph.topics import ACTION_NAMES, RECORDED_TOPICS, TOPICS
from mile_ros.graph.training import TrainingError, train_from_bags
from mile_ros.learning import MileCheckpoint, Spec, build_policy, load_checkpoint
from mile_ros.nodes.common import vector_msg

OBS_DIM = 5
TOPIC_TYPES = {"/" + t: TOPICS[t].type for t in RECORDED_TOPICS}  # as a recorder at the root writes them


def write_episode(
    path, steps, human_steps=(), hold_steps=(), seed=0, shuffle=True, end=True, mode="train", poison=None, close=True
):
    """A bag like the recorder's: per step observation, proposal, command, human action; arrival shuffled.

    ``poison=(step, part, value)`` writes ``value`` into the first entry of that step's ``"obs"``,
    ``"robot"`` or ``"human"`` vector (bad data, as a broken sensor or pad would send it).
    ``close=False`` leaves the bag as a recorder that dies at the end of the episode would.
    """
    rng = np.random.default_rng(seed)
    truth, records = [], []
    for i in range(steps + 1):  # +1: the final observation, answered but never executed
        stamp = 10**9 + i * 5 * 10**7
        obs, robot, human = rng.normal(size=OBS_DIM), rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 4)
        if poison is not None and poison[0] == i:
            {"obs": obs, "robot": robot, "human": human}[poison[1]][0] = poison[2]
        records.append(("/mile/observation", vector_msg(stamp, [f"obs_{k}" for k in range(OBS_DIM)], obs)))
        records.append(("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, robot)))
        source = "hold" if i in hold_steps else "human" if i in human_steps else "robot"
        executed = np.zeros(4) if source == "hold" else human if source == "human" else robot
        records.append(("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, executed, source)))
        if source == "human":
            records.append(("/mile/human_action", vector_msg(stamp, ACTION_NAMES, human, "human")))
        records.append(("/mile/intervention", Bool(data=source == "human")))
        if i < steps and source != "hold":
            truth.append((stamp, obs, robot, source == "human", human))
    # A late command of the previous episode, as a recorder under load may still receive it.
    stale = 10**9 - 5 * 10**7
    records.append(("/mile/observation", vector_msg(stale, [f"obs_{k}" for k in range(OBS_DIM)], np.ones(OBS_DIM))))
    records.append(("/mile/proposed_action", vector_msg(stale, ACTION_NAMES, np.zeros(4))))
    records.append(("/mile/executed_action", vector_msg(stale, ACTION_NAMES, np.zeros(4), "robot")))
    if end:
        final = 10**9 + steps * 5 * 10**7
        names, values = ["steps", "success", "return", "duration_s"], [steps, 1, 0, steps * 0.05]
        records.append(("/sim/episode_end", vector_msg(final, names, values, "success")))
    order = rng.permutation(len(records)) if shuffle else np.arange(len(records))
    writer = EpisodeBagWriter(path, TOPIC_TYPES)
    for log_time, k in enumerate(order):
        topic, msg = records[k]
        writer.write(topic, serialize_message(msg), 10**9 + log_time)
    if close:
        writer.close({"mode": mode, "iteration": 0, "episode": seed})
    return truth


def cut_inside_last_chunk(mcap) -> None:
    """Cut an MCAP file 30 bytes into its last chunk record, as a writer killed mid-write leaves it."""
    data = mcap.read_bytes()
    pos, last_chunk = 8, None  # records after the magic: opcode (1 byte), length (8 bytes), body
    while pos + 9 <= len(data):
        if data[pos] == 0x06:
            last_chunk = pos
        pos += 9 + int.from_bytes(data[pos + 1 : pos + 9], "little")
    mcap.write_bytes(data[: last_chunk + 30])


def test_round_trip_opens_with_rosbags(tmp_path):
    truth = write_episode(tmp_path / "ep", 12, human_steps={3, 4})
    with Reader(tmp_path / "ep") as reader:  # the plain rosbags reader opens it
        assert reader.message_count > 0
        topics = {c.topic for c in reader.connections}
    assert {"/" + t for t in RECORDED_TOPICS} <= topics
    meta = (tmp_path / "ep" / "metadata.yaml").read_text()
    assert "mile.mode" in meta and "custom_data" in meta
    bag = read_bag(tmp_path / "ep")
    assert bag.complete and bag.metadata["mode"] == "train"
    steps = episode_steps(bag)
    assert len(steps.stamps) == len(truth) == 12
    assert steps.intervention.sum() == 2


def test_join_by_stamp_not_arrival(tmp_path):
    truth = write_episode(tmp_path / "ep", 30, human_steps={5, 6, 7, 20}, hold_steps={11}, seed=4, shuffle=True)
    steps = episode_steps(read_bag(tmp_path / "ep"))
    assert steps.held == 1
    assert list(steps.stamps) == [t[0] for t in truth]
    np.testing.assert_allclose(steps.observation, np.array([t[1] for t in truth]))
    np.testing.assert_allclose(steps.robot_action, np.array([t[2] for t in truth]))
    assert list(steps.intervention) == [t[3] for t in truth]
    for row, t in zip(steps.human_action, truth):
        if t[3]:
            np.testing.assert_allclose(row, t[4])
        else:
            assert np.isnan(row).all()


def test_killed_writer_leaves_a_readable_bag(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from rclpy.serialization import serialize_message
        from mile_ros.graph.bag_episode import EpisodeBagWriter
        from mile_ros.nodes.common import vector_msg
        topics = {{"/mile/proposed_action": "sensor_msgs/msg/JointState"}}
        w = EpisodeBagWriter({str(tmp_path / "ep")!r}, topics)
        for i in range(37):
            w.write("/mile/proposed_action", serialize_message(vector_msg(i, ["a"], [float(i)])), i)
        print("written", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "ep" / "metadata.yaml").exists()  # it never closed
    bag = read_bag(tmp_path / "ep")
    assert not bag.complete and "metadata.yaml" in bag.note
    values = [m.decode().position[0] for m in bag.messages]
    assert values == [float(i) for i in range(37)]
    # A file cut in the middle of a record keeps every record before the cut.
    cut_inside_last_chunk(next((tmp_path / "ep").glob("*.mcap")))
    cut = read_bag(tmp_path / "ep")
    assert [m.decode().position[0] for m in cut.messages] == [float(i) for i in range(36)]
    assert "mid-record" in cut.note


def test_corrupt_bags_are_named_and_skipped(tmp_path):
    write_episode(tmp_path / "bags" / "a", 8, human_steps={2})
    (tmp_path / "bags" / "b").mkdir(parents=True)
    (tmp_path / "bags" / "b" / "b.mcap").write_bytes(b"this is not an mcap file")
    write_episode(tmp_path / "bags" / "c", 6, seed=1)
    report = build_dataset(find_bags(tmp_path / "bags"))
    assert [p.name for p in report.used] == ["a", "c"]
    assert [p.name for p, _ in report.skipped] == ["b"] and "not an MCAP" in report.skipped[0][1]
    assert len(report.dataset) == 14 and report.dataset.intervention.sum() == 1
    assert "b (" in report.summary()


def test_train_from_bags_writes_a_new_checkpoint_and_overwrites_nothing(tmp_path):
    for k in range(3):
        write_episode(tmp_path / "bags" / f"ep{k}", 20, human_steps={3, 4, 5}, seed=k)
    spec = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    init = tmp_path / "init.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (16,))).save(init)
    from mile_ros.learning import MileConfig

    config = MileConfig(epochs=3, batch_size=16, cost=1.0, sigma=1.0)
    out = train_from_bags(tmp_path / "bags", init, tmp_path / "u1.pt", config)
    assert out.rows == 60 and out.intervention_rate == pytest.approx(9 / 60)
    ckpt = load_checkpoint(tmp_path / "u1.pt", expected=spec)
    assert ckpt.meta["rows"] == 60 and len(ckpt.meta["bags"]) == 3
    before = (tmp_path / "u1.pt").read_bytes()
    with pytest.raises(TrainingError, match="refusing to overwrite"):
        train_from_bags(tmp_path / "bags", init, tmp_path / "u1.pt", config)
    assert (tmp_path / "u1.pt").read_bytes() == before
    with pytest.raises(TrainingError, match="no usable step"):
        (tmp_path / "empty").mkdir()
        train_from_bags(tmp_path / "empty", init, tmp_path / "u2.pt", config)


@pytest.mark.parametrize("namespace, legacy", [("", True), ("/arm1", False), ("/lab/arm2", False)])
def test_bags_of_any_namespace_and_earlier_names_read_the_same(tmp_path, namespace, legacy):
    """A bag recorded in a namespace (``/arm1/mile/observation``) or before names were relative and
    renamed (``/mile/observation``, ``/sim/episode_end``) reads as today's root names: the same steps,
    dataset and ``mile-ros bags`` report as a bag of today's recorder at the root."""
    from bag_factory import write_session_episode

    from mile_ros.graph.bag_tools import inspect_bag

    reference = write_session_episode(tmp_path / "now", 9, human_steps={2, 3})
    truth = write_session_episode(tmp_path / "then", 9, human_steps={2, 3}, namespace=namespace, legacy=legacy)
    with Reader(tmp_path / "then") as reader:
        recorded = {c.topic for c in reader.connections}
    prefix = namespace or ""
    assert f"{prefix}/mile/observation" in recorded
    now, then = read_bag(tmp_path / "now"), read_bag(tmp_path / "then")
    assert {m.topic for m in then.messages} == {m.topic for m in now.messages}
    a, b = episode_steps(now), episode_steps(then)
    assert list(b.stamps) == truth.stamps == reference.stamps
    np.testing.assert_array_equal(a.observation, b.observation)
    np.testing.assert_array_equal(b.intervention, truth.intervention)
    assert len(then.topic("episode/end")) == 1 == len(then.topic("/sim/episode_end"))
    info = inspect_bag(tmp_path / "then")
    assert info.problems == [], info.problems
