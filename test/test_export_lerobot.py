"""``mile-ros export``: episode bags as a LeRobotDataset v3.0, opened by LeRobot's own loader, and back.

The loader runs in ``.venv-lerobot`` (scripts/setup-lerobot.sh: LeRobot 0.4.4 beside .venv's torch);
the test makes it when it is missing, and fails, not skips, when it cannot.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
import pyarrow.parquet as pq
from bag_factory import OBS_DIM, image_at, write_session_episode

from mile_ros.cli.main import main
from mile_ros.graph.bag_dataset import build_dataset, find_bags
from mile_ros.graph.lerobot import LeRobotFormatError, export_lerobot, from_lerobot
from mile_ros.learning import InterventionDataset

ROOT = Path(__file__).resolve().parents[1]
LEROBOT_PY = ROOT / ".venv-lerobot" / "bin" / "python"


@pytest.fixture(scope="module")
def lerobot_python() -> Path:
    """LeRobot's environment, made once (about a minute) when it is not there yet."""
    if not LEROBOT_PY.exists():
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup-lerobot.sh")], capture_output=True, text=True, timeout=1200
        )
        assert done.returncode == 0, "scripts/setup-lerobot.sh failed:\n" + done.stdout[-2000:] + done.stderr[-3000:]
    return LEROBOT_PY


def run_lerobot(python: Path, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPATH="",
    )
    done = subprocess.run(
        [str(python), "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


# The loader's view of a dataset: every frame through a torch DataLoader, as training reads it.
LOAD = """
    import json, sys
    import numpy as np, torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    root, out = ROOT_DIR, OUT_STEM
    ds = LeRobotDataset("local/mile_ros", root=root)
    arrays = {}
    for batch in torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False):
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                arrays.setdefault(k, []).append(v.numpy())
            else:
                arrays.setdefault(k, []).extend(v)
    joined = {k: np.concatenate(v) if isinstance(v[0], np.ndarray) else np.array(v) for k, v in arrays.items()}
    np.savez(out + ".npz", **joined)
    eps = ds.meta.episodes
    shifted = LeRobotDataset("local/mile_ros", root=root, delta_timestamps={"action": [0.0, 1.0 / ds.fps]})
    last = shifted[ds.meta.episodes[0]["dataset_to_index"] - 1]
    json.dump({
        "len": len(ds), "episodes": ds.num_episodes, "fps": ds.fps, "camera_keys": ds.meta.camera_keys,
        "features": sorted(ds.features), "success": list(eps["success"]), "end_reason": list(eps["end_reason"]),
        "interventions": list(eps["interventions"]), "mode": list(eps["mode"]),
        "stats_keys": sorted(ds.meta.stats), "pad_at_end": [bool(x) for x in last["action_is_pad"]],
        "shifted_shape": list(last["action"].shape),
    }, open(out + ".json", "w"))
"""


def load_script(root: Path, out: Path) -> str:
    return LOAD.replace("ROOT_DIR", repr(str(root))).replace("OUT_STEM", repr(str(out)))


def session_bags(root: Path, camera: bool = False) -> dict:
    """A session's bag folder: two trained-on episodes, an evaluation, a discarded and an interrupted one."""
    b = root / "bags" / "iter_000"
    truth = {
        "train_000": write_session_episode(b / "train_000", 12, {2, 3, 4}, seed=0, camera=camera),
        "train_001": write_session_episode(
            b / "train_001", 9, seed=1, camera=camera, success=False, end_reason="time_limit", episode=1
        ),
        "eval_000": write_session_episode(b / "eval_000", 7, seed=2, camera=camera, mode="eval"),
    }
    write_session_episode(b / "train_002", 5, seed=3, camera=camera, success=False, end_reason="discard", episode=2)
    write_session_episode(b / "train_003", 5, seed=4, camera=camera, close=False, episode=3)
    return truth


def test_export_writes_the_v3_layout_and_reads_back_as_the_trainers_data(tmp_path):
    truth = session_bags(tmp_path)
    report = export_lerobot(tmp_path / "bags", tmp_path / "lr")
    assert [p.name for p in report.exported] == ["eval_000", "train_000", "train_001"]
    skipped = dict((p.name, why) for p, why in report.skipped)
    assert set(skipped) == {"train_002", "train_003"}
    assert "discarded" in skipped["train_002"] and "not a complete episode" in skipped["train_003"]
    assert report.frames == 7 + 12 + 9 and report.interventions == 3 and not report.camera
    out = tmp_path / "lr"
    for rel in (
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
    ):
        assert (out / rel).is_file(), rel
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["total_frames"] == 28
    assert info["total_episodes"] == 3 and info["features"]["observation.state"]["shape"] == [OBS_DIM]
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["success"] for e in episodes] == [True, True, False]
    assert [e["end_reason"] for e in episodes] == ["success", "success", "time_limit"]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(0, 7), (7, 19), (19, 28)]
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    t = truth["train_000"]
    rows = slice(7, 19)
    np.testing.assert_allclose(np.stack(data["action"].to_pylist()[rows]), t.executed, rtol=1e-6)
    np.testing.assert_allclose(np.stack(data["robot_action"].to_pylist()[rows]), t.robot, rtol=1e-6)
    np.testing.assert_allclose(np.stack(data["human_action"].to_pylist()[rows]), t.human, rtol=1e-6)  # NaN too
    np.testing.assert_allclose(data["intervention_probability"].to_pylist()[rows], t.probability, rtol=1e-6)
    assert data["intervention"].to_pylist()[rows] == list(t.intervention)
    assert data["next.success"].to_pylist()[rows] == [False] * 11 + [True]
    # Back as training data: the same rows the trainer's dataset builder makes of the bags.
    back, notes = from_lerobot(out)
    ref = build_dataset(find_bags(tmp_path / "bags"), include_modes=("train", "eval"), quarantine=False).dataset
    assert notes == [] and len(back) == len(ref) == 28
    np.testing.assert_allclose(back.observation, ref.observation, rtol=1e-6)
    np.testing.assert_allclose(back.robot_action, ref.robot_action, rtol=1e-6)
    np.testing.assert_array_equal(back.intervention, ref.intervention)
    np.testing.assert_allclose(back.human_action, ref.human_action, rtol=1e-6)
    # An existing dataset is never overwritten; only the train episodes with --modes.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(LeRobotFormatError, match="refusing to overwrite"):
        export_lerobot(tmp_path / "bags", out)
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert export_lerobot(tmp_path / "bags", tmp_path / "train_only", modes=("train",)).episodes == 2
    kept = export_lerobot(tmp_path / "bags", tmp_path / "all", include_discarded=True)
    assert [p.name for p in kept.exported] == ["eval_000", "train_000", "train_001", "train_002"]
    last = pq.read_table(tmp_path / "all" / "meta/episodes/chunk-000/file-000.parquet").to_pylist()[-1]
    assert (last["end_reason"], last["success"], last["length"]) == ("discard", False, 5)


def test_cli_names_bad_input_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "bags" / "x").mkdir(parents=True)
    (tmp_path / "bags" / "x" / "x.mcap").write_bytes(b"not an mcap")
    assert main(["export", "--lerobot", str(tmp_path / "bags"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no episode to export" in err and "not an MCAP" in err and not (tmp_path / "out").exists()
    assert main(["export", "--from-lerobot", str(tmp_path / "bags"), str(tmp_path / "d.npz")]) == 2
    assert "no meta/info.json" in capsys.readouterr().err and not (tmp_path / "d.npz").exists()
    session_bags(tmp_path / "s")
    assert main(["export", "--lerobot", str(tmp_path / "s" / "bags"), str(tmp_path / "lr")]) == 0
    captured = capsys.readouterr()
    assert "28 frames in 3 episodes" in captured.out and "skipped" in captured.err
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    info["features"].pop("intervention")
    (tmp_path / "lr" / "meta" / "info.json").write_text(json.dumps(info))
    assert main(["export", "--from-lerobot", str(tmp_path / "lr"), str(tmp_path / "d.npz")]) == 2
    assert "no intervention column" in capsys.readouterr().err


@pytest.mark.slow
def test_lerobots_loader_reads_the_export_with_camera(tmp_path, lerobot_python):
    truth = session_bags(tmp_path, camera=True)
    assert main(["export", "--lerobot", str(tmp_path / "bags"), str(tmp_path / "lr")]) == 0
    out = tmp_path / "view"
    run_lerobot(lerobot_python, load_script(tmp_path / "lr", out), tmp_path)
    meta = json.loads(out.with_suffix(".json").read_text())
    arrays = np.load(out.with_suffix(".npz"))
    assert meta["len"] == 28 and meta["episodes"] == 3 and meta["fps"] == 20
    assert meta["camera_keys"] == ["observation.images.camera"]
    assert meta["success"] == [True, True, False] and meta["end_reason"] == ["success", "success", "time_limit"]
    assert meta["mode"] == ["eval", "train", "train"] and meta["interventions"] == [0, 3, 0]
    assert {"robot_action", "human_action", "intervention", "action", "observation.state"} <= set(meta["features"])
    assert "observation.images.camera" in meta["stats_keys"]
    assert meta["shifted_shape"] == [2, 4] and meta["pad_at_end"] == [False, True]  # delta timestamps work
    order = ["eval_000", "train_000", "train_001"]
    cat = {
        k: np.concatenate([getattr(truth[n], k) for n in order]) for k in ("observation", "robot", "executed", "human")
    }
    np.testing.assert_allclose(arrays["observation.state"], cat["observation"], rtol=1e-6)
    np.testing.assert_allclose(arrays["action"], cat["executed"], rtol=1e-6)
    np.testing.assert_allclose(arrays["robot_action"], cat["robot"], rtol=1e-6)
    np.testing.assert_allclose(arrays["human_action"], cat["human"], rtol=1e-6)
    np.testing.assert_array_equal(arrays["intervention"], np.concatenate([truth[n].intervention for n in order]))
    assert list(arrays["task"]) == ["drawer-open-v3"] * 28
    # The camera frame of every step, pixel for pixel (PNG is lossless; the loader gives CHW in [0, 1]).
    images = np.round(arrays["observation.images.camera"] * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    expected = np.stack([image_at(i) for n in order for i in range(len(truth[n].stamps))])
    np.testing.assert_array_equal(images, expected)


@pytest.mark.slow
def test_a_dataset_lerobot_wrote_becomes_training_data(tmp_path, lerobot_python):
    """LeRobot's own writer, an intervention column as its HIL recording names it, no robot proposal."""
    script = f"""
        import numpy as np
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        feats = {{"observation.state": {{"dtype": "float32", "shape": (5,), "names": None}},
                 "action": {{"dtype": "float32", "shape": (3,), "names": None}},
                 "complementary_info.is_intervention": {{"dtype": "float32", "shape": (1,), "names": None}}}}
        root = {str(tmp_path / "made")!r}
        ds = LeRobotDataset.create("local/made", fps=10, features=feats, root=root, use_videos=False)
        rng = np.random.default_rng(0)
        written = {{"obs": [], "act": [], "flag": []}}
        for e in range(3):
            for i in range(8 + e):
                obs = rng.normal(size=5).astype(np.float32)
                act, flag = rng.uniform(-1, 1, 3).astype(np.float32), float(i in (2, 3, 4))
                ds.add_frame({{"observation.state": obs, "action": act,
                              "complementary_info.is_intervention": np.array([flag], np.float32), "task": "push"}})
                written["obs"].append(obs); written["act"].append(act); written["flag"].append(flag)
            ds.save_episode()
        ds.finalize()
        np.savez({str(tmp_path / "written.npz")!r}, **{{k: np.array(v) for k, v in written.items()}})
    """
    run_lerobot(lerobot_python, script, tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mile_ros.cli.main",
            "export",
            "--from-lerobot",
            str(tmp_path / "made"),
            str(tmp_path / "d.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "27 steps in 3 episodes (9 intervened" in done.stdout
    assert "robot's overridden proposal was not recorded" in done.stderr  # said, not hidden
    ds = InterventionDataset.load(tmp_path / "d.npz")
    written = np.load(tmp_path / "written.npz")
    np.testing.assert_allclose(ds.observation, written["obs"], rtol=1e-6)
    np.testing.assert_array_equal(ds.intervention, written["flag"] > 0.5)
    flag = ds.intervention
    np.testing.assert_allclose(ds.human_action[flag], written["act"][flag], rtol=1e-6)
    assert np.isnan(ds.human_action[~flag]).all()
    np.testing.assert_allclose(ds.robot_action[~flag], written["act"][~flag], rtol=1e-6)
    # Any method trains on it: a short MILE fit.
    from mile_ros.learning import MileConfig, fit_mile

    result = fit_mile(ds, MileConfig(epochs=2, batch_size=8, cost=1.0, sigma=1.0))
    assert result is not None


def test_bench_lerobot_prints_the_exports_size_and_time_per_thousand_steps(tmp_path, capsys):
    """The export's speed figures come from ``mile-ros bench lerobot`` (the one benchmark registry)."""
    started = time.monotonic()
    assert main(["bench", "lerobot", "--steps", "600"]) == 0
    out = capsys.readouterr().out
    assert "600 steps in 2 episodes" in out and "per 1,000 steps" in out
    assert re.search(r"export / read = [\d.]+; dataset / bags size = [\d.]+", out), out
    assert time.monotonic() - started < 300
    assert main(["bench", "lerobot", "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the flag left `mile-ros export`
        main(["export", "--bench", "600"])


@pytest.mark.slow
def test_a_bag_the_recorder_node_recorded_exports_and_loads(tmp_path, lerobot_python):
    """The recorder node in its own process over DDS, with the camera, then `bags info`, the export, LeRobot."""
    from sensor_msgs.msg import Image

    from mile_ros.graph.topics import ACTION_NAMES
    from mile_ros.nodes.common import to_time, vector_msg
    from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess(
        "recorder_node", domain, {"output_dir": str(tmp_path), "drain_s": 1.0, "record_camera": True}, tmp_path
    )
    bag = tmp_path / "bags" / "iter_000" / "train_000"
    rng = np.random.default_rng(7)
    published = []
    try:
        for topic in ("/mile/observation", "/mile/executed_action", "/camera/image_raw", "/episode/end"):
            probe.wait_matched(topic)
        info = json.dumps({"iteration": 0, "mode": "train", "episode": 0, "task": "drawer-open-v3"})
        probe.record("recorder_node", str(bag), json.loads(info))  # a lifecycle node: configure, activate
        for i in range(25):
            stamp = 10**9 + i * 50_000_000
            obs, robot = rng.normal(size=OBS_DIM), rng.uniform(-1, 1, 4)
            human = rng.uniform(-1, 1, 4) if 8 <= i < 12 else None
            img = image_at(i)
            msg = Image(height=16, width=16, encoding="rgb8", step=48)
            msg.header.stamp, msg.header.frame_id = to_time(stamp), "camera"
            msg.data = img.tobytes()
            probe.publish("/camera/image_raw", msg)
            probe.publish("/mile/observation", vector_msg(stamp, [f"obs_{k}" for k in range(OBS_DIM)], obs))
            probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, robot))
            executed = robot if human is None else human
            source = "robot" if human is None else "human"
            probe.publish("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, executed, source))
            if human is not None:
                probe.publish("/mile/human_action", vector_msg(stamp, ACTION_NAMES, human, "human"))
            published.append((obs, robot, executed, human is not None))
            time.sleep(0.01)  # the camera is best effort, as from a real camera: give it room
        end = 10**9 + 25 * 50_000_000
        names = ["steps", "success", "return", "duration_s"]
        probe.publish("/episode/end", vector_msg(end, names, [25, 1.0, 0.0, 25 * 0.05], "success"))
        probe.stop_recording("recorder_node", str(bag))  # deactivate (drains, closes), cleanup
    finally:
        node.stop()
        probe.close()
    rows = json.loads(bags_json(tmp_path / "bags"))
    assert [(r["state"], r["steps"], r["interventions"], r["success"]) for r in rows] == [("ok", 25, 4, True)]
    assert rows[0]["topics"]["/camera/image_raw"] >= 20
    assert main(["export", "--lerobot", str(tmp_path / "bags"), str(tmp_path / "lr")]) == 0
    out = tmp_path / "view"
    run_lerobot(lerobot_python, load_script(tmp_path / "lr", out), tmp_path)
    meta = json.loads(out.with_suffix(".json").read_text())
    arrays = np.load(out.with_suffix(".npz"))
    assert meta["len"] == 25 and meta["success"] == [True] and meta["interventions"] == [4]
    np.testing.assert_allclose(arrays["observation.state"], np.array([p[0] for p in published]), rtol=1e-6)
    np.testing.assert_allclose(arrays["robot_action"], np.array([p[1] for p in published]), rtol=1e-6)
    np.testing.assert_allclose(arrays["action"], np.array([p[2] for p in published]), rtol=1e-6)
    np.testing.assert_array_equal(arrays["intervention"], np.array([p[3] for p in published]))
    images = np.round(arrays["observation.images.camera"] * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    # Each frame is its own step's image, or (a best-effort image lost) an earlier step's.
    for i, frame in enumerate(images):
        assert any(np.array_equal(frame, image_at(j)) for j in range(i, -1, -1)), i
    assert sum(np.array_equal(frame, image_at(i)) for i, frame in enumerate(images)) >= 20


def bags_json(root: Path) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bags", "info", "--json", str(root)]) == 0
    return out.getvalue()
