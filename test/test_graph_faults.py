"""Bad data never reaches training: interrupted bags, bags with bad values, a recorder killed mid-record.

Every fault is made for real: bags written by the project's writer in a process that is then killed,
a file cut in the middle of a record, NaN and 1e30 values inside a bag, ``mile-ros train`` run as a
command; each test then looks at what is on disk.
"""

from __future__ import annotations

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

pytest.importorskip("rclpy")  # the bags are written with rclpy's serializer

from rosbags.highlevel import AnyReader
from test_graph_bags import OBS_DIM, cut_inside_last_chunk, write_episode

from mile_ros.graph.bag_dataset import QUARANTINE, build_dataset, find_bags
from mile_ros.graph.bag_episode import mark_interrupted, read_bag
from mile_ros.learning import MileCheckpoint, Spec, build_policy, load_checkpoint

TEST_DIR = Path(__file__).resolve().parent
MILE_ROS = Path(sys.executable).with_name("mile-ros")  # the installed command, as an operator runs it
SPEC = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)


def killed_writer(path: Path, steps: int, mode: str = "train", seed: int = 0) -> None:
    """Write an episode's bag in a process that is SIGKILLed before it closes the bag."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TEST_DIR)!r})
        from test_graph_bags import write_episode
        write_episode({str(path)!r}, {steps}, human_steps={{2, 3}}, seed={seed}, mode={mode!r}, close=False)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (path / "metadata.yaml").exists() and not (path / "episode.json").exists()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rosbags_messages(bag: Path) -> list[tuple[str, int, bytes]]:
    """What rosbags' AnyReader (as ros2 bag users would) reads from the bag."""
    with AnyReader([bag]) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def test_interrupted_bags_are_marked_and_never_trained_on(tmp_path):
    bags = tmp_path / "bags" / "iter_000"
    write_episode(bags / "train_000", 10, human_steps={2, 3})
    # An evaluation episode whose recorder was killed, set aside by the session manager: no sidecar,
    # which the builder used to take for a training episode.
    killed_writer(bags / "eval_000", 12, mode="eval", seed=1)
    (bags / "eval_000").rename(bags / "eval_000.interrupted0")
    # What the old recorder left on Ctrl-C (closed, "complete": true) and the session then set aside.
    write_episode(bags / "train_001", 9, human_steps={1}, seed=2)
    (bags / "train_001").rename(bags / "train_001.interrupted0")
    # A recorder killed mid-episode whose session has not been resumed yet.
    killed_writer(bags / "train_002", 8, seed=3)

    report = build_dataset(find_bags(tmp_path / "bags"), spec=SPEC)
    assert report.used == [bags / "train_000"] and len(report.dataset) == 10
    assert sorted(p.name for p, _ in report.interrupted) == [
        "eval_000.interrupted0",
        "train_001.interrupted0",
        "train_002",
    ]
    assert "3 interrupted left out" in report.summary() and "train_002 (not trained on" in report.summary()

    # The session manager's mark on the bag of a killed recorder: a real rosbag2 bag, every message kept.
    aside = bags / "eval_000.interrupted0"
    original = next(aside.glob("*.mcap"))
    before, before_digest = read_bag(aside).messages, digest(original)
    note = mark_interrupted(aside, {"mode": "eval", "iteration": 0}, "session stopped mid-episode")
    assert note.startswith(f"reindexed: {len(before)} messages recovered")
    assert (aside / "metadata.yaml").is_file()
    assert digest(aside / (original.name + ".truncated")) == before_digest  # the original, byte for byte
    assert rosbags_messages(aside) == [(m.topic, m.log_time_ns, m.data) for m in before]
    sidecar = json.loads((aside / "episode.json").read_text())
    assert sidecar["complete"] is False and sidecar["interrupted"] == "session stopped mid-episode"
    assert sidecar["mode"] == "eval" and sum(sidecar["message_counts"].values()) == len(before)
    assert "mile.complete: 'false'" in (aside / "metadata.yaml").read_text()

    # A closed bag is only marked (its custom_data and sidecar), in place.
    legacy = bags / "train_001.interrupted0"
    legacy_digest = digest(next(legacy.glob("*.mcap")))
    assert mark_interrupted(legacy, {"mode": "train"}, "stopped") == "closed bag marked incomplete"
    assert digest(next(legacy.glob("*.mcap"))) == legacy_digest
    assert read_bag(legacy).metadata["complete"] is False and rosbags_messages(legacy)

    # Marked, they are still left out, by their mark as much as by their name.
    report = build_dataset(find_bags(tmp_path / "bags"), spec=SPEC)
    assert report.used == [bags / "train_000"]
    assert dict((p.name, why) for p, why in report.interrupted)["eval_000.interrupted0"] == (
        "session stopped mid-episode"
    )


def test_a_bag_cut_mid_record_becomes_a_real_rosbag2_bag(tmp_path):
    bag = tmp_path / "train_000.interrupted0"
    killed_writer(bag, 20)
    mcap = next(bag.glob("*.mcap"))
    cut_inside_last_chunk(mcap)  # the file ends inside the last message's chunk
    cut = mcap.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever rosbags raises: it cannot open this
        rosbags_messages(bag)
    recovered = read_bag(bag).messages
    assert "mid-record" in read_bag(bag).note and recovered

    note = mark_interrupted(bag, {"mode": "train"}, "recorder killed")
    assert f"{len(recovered)} messages recovered" in note and "ended mid-record" in note
    assert rosbags_messages(bag) == [(m.topic, m.log_time_ns, m.data) for m in recovered]
    assert (bag / (mcap.name + ".truncated")).read_bytes() == cut
    assert sorted(p.name for p in bag.iterdir()) == sorted(
        ["episode.json", "metadata.yaml", bag.name + ".mcap", mcap.name + ".truncated"]
    )
    assert not list(tmp_path.glob(".*"))  # no work folder left behind
    # A second resume finds a closed bag: it is only marked again, nothing is rewritten or lost.
    assert mark_interrupted(bag, {"mode": "train"}, "recorder killed") == "closed bag marked incomplete"
    assert rosbags_messages(bag) == [(m.topic, m.log_time_ns, m.data) for m in recovered]


def train_cli(tmp_path: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        str(MILE_ROS),
        "train",
        "--bags",
        str(tmp_path / "bags"),
        "--init",
        str(tmp_path / "init.pt"),
        "--out",
        str(tmp_path / out),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--no-progress",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.fixture
def init(tmp_path):
    MileCheckpoint(SPEC, build_policy(SPEC.stacked_dim, 4, False, (8,))).save(tmp_path / "init.pt")
    return tmp_path / "init.pt"


def test_bad_bags_are_quarantined_by_name_and_training_goes_on(tmp_path, init):
    bags = tmp_path / "bags"
    write_episode(bags / "ep0", 12, human_steps={1, 2}, seed=0)
    # 1.0005 is float rounding's side of the bound (within the tolerance): a good bag.
    write_episode(bags / "ep1", 12, human_steps={1, 2}, seed=1, poison=(4, "robot", 1.0005))
    bad = {
        "nan_human": ((2, "human", float("nan")), "human action is NaN or infinite"),
        "huge_human": ((1, "human", 1e30), "human action [ 1.0000e+30"),
        "huge_robot": ((5, "robot", -1e30), "robot action [-1.0000e+30"),
        "inf_obs": ((3, "obs", float("inf")), "observation is NaN or infinite"),
        "huge_obs": ((6, "obs", 1e30), "observation has a value beyond"),
    }
    for name, (poison, _) in bad.items():
        write_episode(bags / name, 12, human_steps={1, 2}, seed=7, poison=poison)
    digests = {name: digest(next((bags / name).glob("*.mcap"))) for name in bad}

    done = train_cli(tmp_path, "u1.pt")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "24 steps from 2 bags" in done.stdout and f"{len(bad)} quarantined" in done.stdout
    for name, (poison, why) in bad.items():
        line = next(ln for ln in done.stderr.splitlines() if f"bags/{name}:" in ln)
        assert why in line and f"step {poison[0]}" in line and f"{QUARANTINE}/{name}" in line, line
        moved = bags / QUARANTINE / name
        assert not (bags / name).exists() and digest(next(moved.glob("*.mcap"))) == digests[name]
        reason = (bags / QUARANTINE / f"{name}.reason.txt").read_text()
        assert f"bag: {bags / name}" in reason and why in reason
    meta = load_checkpoint(tmp_path / "u1.pt", expected=SPEC).meta
    assert sorted(Path(b).name for b in meta["bags"]) == ["ep0", "ep1"] and meta["rows"] == 24

    # The next update does not see them again; nothing more is moved.
    again = train_cli(tmp_path, "u2.pt")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("24 steps from 2 bags;") and "skipped" not in again.stderr, again.stderr
    assert sorted(p.name for p in (bags / QUARANTINE).iterdir()) == sorted([*bad, *(f"{n}.reason.txt" for n in bad)])
    assert [p.name for p in find_bags(bags)] == ["ep0", "ep1"]
    assert {p.name for p in find_bags(bags, include_quarantined=True)} == {"ep0", "ep1", *bad}


def test_nothing_left_to_train_on_or_divergence_exit_non_zero_with_a_message(tmp_path, init):
    bags = tmp_path / "bags"
    write_episode(bags / "only", 10, human_steps={2}, poison=(2, "human", float("nan")))
    done = train_cli(tmp_path, "u1.pt")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{bags / 'only'}: bad data: step 2" in done.stderr
    assert "no usable step" in done.stderr
    assert (bags / QUARANTINE / "only").is_dir() and not (tmp_path / "u1.pt").exists()

    # Good bags and a learning rate that blows the weights up: training diverges, nothing is written.
    write_episode(bags / "ep0", 12, human_steps={1, 2}, seed=0)
    write_episode(bags / "ep1", 12, human_steps={1, 2}, seed=1)
    diverged = train_cli(tmp_path, "u2.pt", "--lr", "1e30")
    assert diverged.returncode == 3 and "Traceback" not in diverged.stderr, diverged.stderr[-3000:]
    assert "training diverged, no checkpoint written" in diverged.stderr
    assert not (tmp_path / "u2.pt").exists()
    assert (bags / "ep0").is_dir() and (bags / "ep1").is_dir()  # nothing lost


@pytest.mark.slow
def test_a_recorder_killed_mid_episode_loses_nothing_and_is_never_trained_on(tmp_path):
    """``mile-ros sim`` with its recorder SIGKILLed during an evaluation episode, then resumed."""
    pytest.importorskip("metaworld")
    from test_session_shutdown import node_pids

    from mile_ros.nodes.probe import unique_domain_id
    from mile_ros.sim import make_env

    spec = make_env("drawer-open-v3").spec
    init = tmp_path / "init.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (32, 32))).save(init)
    run = tmp_path / "run"

    def sim() -> subprocess.Popen:
        args = ["--iterations", "1", "--episodes", "1", "--eval-episodes", "1", "--max-episode-steps", "60"]
        args += ["--epochs", "3", "--mental-rollouts", "1", "--domain-id", str(unique_domain_id())]
        cmd = [str(MILE_ROS), "sim", "--out", str(run), "--init-policy", str(init), *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    bag = run / "bags" / "iter_000" / "eval_000"

    def steps_on_disk() -> int:
        try:
            return len(read_bag(bag).topic("/mile/executed_action"))
        except Exception:  # not there or nothing flushed yet
            return 0

    proc = sim()
    try:
        deadline = time.monotonic() + 300
        while steps_on_disk() < 5:  # mid-episode: steps in the file, the bag not closed
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.02)
        (victim,) = node_pids(run, "recorder_node")
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "recorder_node" in err, err[-3000:]
    assert not (bag / "metadata.yaml").exists(), "the episode ended before the kill: nothing interrupted"
    killed = read_bag(bag).messages

    again = sim()
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, out[-3000:] + err[-3000:]
    aside = bag.with_name("eval_000.interrupted0")
    # A real rosbag2 bag now, holding every message the killed recorder had written, marked.
    assert rosbags_messages(aside) == [(m.topic, m.log_time_ns, m.data) for m in killed]
    assert (aside / "eval_000.mcap.truncated").is_file()
    sidecar = json.loads((aside / "episode.json").read_text())
    assert sidecar["complete"] is False and sidecar["mode"] == "eval"
    assert "iter_000/eval_000" in sidecar["interrupted"]
    # The episode was recorded again, and the update trained on the training episode alone.
    assert read_bag(bag).metadata["complete"] is True
    meta = load_checkpoint(run / "checkpoints" / "update_001.pt").meta
    assert meta["bags"] == [str(run / "bags" / "iter_000" / "train_000")]
    assert str(aside) in [p for p, _ in meta["skipped_bags"]]
    names = [e["name"] for e in json.loads((run / "session.json").read_text())["episodes"]]
    assert sorted(names) == ["iter_000/eval_000", "iter_000/train_000", "iter_001/eval_000"]
