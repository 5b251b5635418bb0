"""``mile-ros bags info|check|repair``: a session's bags as the command sees them, then repaired."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from bag_factory import write_session_episode
from rosbags.rosbag2 import Reader

from mile_ros.cli.main import main
from mile_ros.graph.bag_dataset import build_dataset, find_bags


def bags_cli(*args: str, process: bool = False) -> subprocess.CompletedProcess:
    """``mile-ros bags ARGS``: in this process (fast), or as its own process like a user runs it."""
    if process:
        return subprocess.run(
            [sys.executable, "-m", "mile_ros.cli.main", "bags", *args], capture_output=True, text=True, timeout=300
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["bags", *args])
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory with one bag of each kind a session can leave behind."""
    b = tmp_path / "run" / "bags" / "iter_000"
    write_session_episode(b / "train_000", 12, {2, 3, 4}, seed=0)
    write_session_episode(b / "train_001", 9, seed=1, success=False, end_reason="time_limit", episode=1)
    write_session_episode(b / "train_002", 6, seed=2, success=False, end_reason="discard", episode=2)
    write_session_episode(b / "eval_000", 7, seed=3, mode="eval")
    # The recorder killed mid-write: no summary, no metadata.yaml, the file cut inside a record.
    write_session_episode(b / "train_003", 10, seed=4, close=False, episode=3)
    mcap = next((b / "train_003").glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:-30])
    # Killed between metadata.yaml and the sidecar.
    write_session_episode(b / "train_004", 8, {1}, seed=5, episode=4)
    (b / "train_004" / "episode.json").unlink()
    # A broken sensor: a NaN observation.
    write_session_episode(b / "train_005", 8, seed=6, episode=5)
    poison_observation(b / "train_005")
    (b / "train_006").mkdir()
    (b / "train_006" / "train_006_0.mcap").write_bytes(b"this is not an mcap file")
    return tmp_path / "run"


def poison_observation(bag_dir: Path) -> None:
    """Rewrite a bag with one observation's first value NaN (as a broken sensor sends it)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import JointState

    from mile_ros.graph.bag_episode import EpisodeBagWriter, episode_meta, read_bag

    bag = read_bag(bag_dir)
    meta = episode_meta(bag_dir)
    topics = {}
    for m in bag.messages:
        topics.setdefault(m.topic, m.msgtype)
    tmp = bag_dir.with_name(bag_dir.name + ".new")
    writer = EpisodeBagWriter(tmp, topics)
    poisoned = False
    for m in bag.messages:
        data = m.data
        if m.topic == "/mile/observation" and not poisoned:
            msg = deserialize_message(data, JointState)
            msg.position = [float("nan"), *list(msg.position)[1:]]
            data, poisoned = serialize_message(msg), True
        writer.write(m.topic, data, m.log_time_ns)
    writer.close({k: v for k, v in meta.items() if k not in ("message_counts", "complete")})
    shutil.rmtree(bag_dir)
    tmp.rename(bag_dir)


def test_info_gives_each_episodes_steps_interventions_success_and_state(run_dir):
    done = bags_cli("info", "--json", str(run_dir))
    assert done.returncode == 0, done.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(done.stdout)}
    assert set(rows) == {"eval_000", *(f"train_00{k}" for k in range(7))}
    ok = rows["train_000"]
    assert (ok["state"], ok["steps"], ok["interventions"], ok["success"], ok["end_reason"]) == (
        "ok",
        12,
        3,
        True,
        "success",
    )
    assert ok["topics"]["/mile/observation"] == 13 and ok["closed"] and ok["problems"] == []
    assert (rows["train_001"]["success"], rows["train_001"]["end_reason"]) == (False, "time_limit")
    assert rows["train_002"]["state"] == "discarded" and rows["eval_000"]["mode"] == "eval"
    cut = rows["train_003"]
    assert cut["state"] == "truncated" and not cut["closed"]
    assert any("no metadata.yaml" in p for p in cut["problems"]) and "mid-record" in " ".join(cut["notes"])
    assert rows["train_004"]["state"] == "ok" and any("no episode.json" in p for p in rows["train_004"]["problems"])
    assert rows["train_005"]["state"] == "bad data" and "NaN" in " ".join(rows["train_005"]["problems"])
    assert rows["train_006"]["state"] == "unreadable"
    table = bags_cli("info", str(run_dir))
    assert table.returncode == 0
    assert "8 bags: 4 ok with 36 steps (4 intervened); 1 discarded" in table.stdout  # train_000, 001, 004, eval_000


def test_check_repair_check(run_dir):
    check = bags_cli("check", str(run_dir))
    assert check.returncode == 1
    assert "problem: no metadata.yaml" in check.stdout and "repair: reindex" in check.stdout
    before = tree(run_dir)
    dry = bags_cli("repair", "--dry-run", "--quarantine", str(run_dir))
    assert dry.returncode == 0 and "would reindex" in dry.stdout and tree(run_dir) == before  # nothing touched
    trained_before = build_dataset(find_bags(run_dir), quarantine=False)
    done = bags_cli("repair", "--quarantine", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "4 of 8 bags repaired" in done.stdout
    b = run_dir / "bags" / "iter_000"
    # The killed recorder's bag: a closed rosbag2 bag now, the original file kept, never trained on.
    with Reader(b / "train_003") as reader:
        assert reader.message_count > 0
    assert list((b / "train_003").glob("*.mcap.truncated"))
    assert json.loads((b / "train_004" / "episode.json").read_text())["mode"] == "train"
    assert (b / "quarantine" / "train_005").is_dir() and (b / "quarantine" / "train_006").is_dir()
    assert "NaN" in (b / "quarantine" / "train_005.reason.txt").read_text()
    # Nothing lost: every file is still somewhere under the run directory.
    kept = set(tree(run_dir).values())
    lost = [name for name, content in before.items() if content not in kept]
    assert lost == []
    again = bags_cli("check", str(run_dir))
    assert again.returncode == 0, again.stdout
    trained = build_dataset(find_bags(run_dir))
    assert [p.name for p in trained.used] == [p.name for p in trained_before.used if p.name != "train_005"]
    np.testing.assert_equal(len(trained.dataset), 12 + 9 + 8)


def test_one_bag_and_bad_input(tmp_path):
    write_session_episode(tmp_path / "ep", 5, {1})
    done = bags_cli("check", str(tmp_path / "ep"))
    assert done.returncode == 0 and "ep " in done.stdout and "1 bags: 1 ok with 5 steps (1 intervened)\n" in done.stdout
    missing = bags_cli("info", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = bags_cli("info", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "no episode bag" in empty.stderr


@pytest.mark.slow
def test_the_command_runs_as_its_own_process(tmp_path):
    write_session_episode(tmp_path / "bags" / "train_000", 6, {2})
    done = bags_cli("info", "--json", str(tmp_path / "bags"), process=True)
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["state"], row["steps"], row["interventions"]) == ("ok", 6, 1)
