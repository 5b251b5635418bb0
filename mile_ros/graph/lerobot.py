"""Episode bags as a LeRobotDataset (format v3.0), and a LeRobot dataset back as training data.

The layout is written here with pyarrow and pandas rather than with the ``lerobot`` package: no release
of ``lerobot`` that writes v3.0 (0.4.x) installs beside this project's torch (they require
torch < 2.11; docs/ecosystem.md). ``test/test_export_lerobot.py`` opens every export with LeRobot's
own ``LeRobotDataset`` in a separate environment, so the format is checked by the real loader.

One episode bag becomes one LeRobot episode, its steps the stamp-joined steps of
:func:`mile_ros.graph.bag_dataset.episode_steps` (held and incomplete steps left out, as for training).
Per frame: ``observation.state`` (the observation the policy acted on), ``action`` (the executed
command), ``robot_action`` (the policy's proposal), ``human_action`` (NaN where the human did not
intervene), ``intervention``, ``intervention_probability`` (the predicted ``P(I=1|s)``, NaN where
none was recorded), ``next.done`` and ``next.success`` (the last frame), ``stamp_ns`` and, where the bags
hold ``/camera/image_raw``, ``observation.images.camera`` (PNG frames inside the parquet files).
Per episode (``meta/episodes``): LeRobot's columns plus ``success``, ``end_reason``, ``mode``,
``interventions``, ``iteration``, ``session_episode`` and ``bag``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mile_ros.learning import InterventionDataset, Spec

from .bag_dataset import _incomplete, episode_steps, find_bags
from .bag_episode import BagError, EpisodeBag, read_bag
from .topics import CAMERA_TOPIC, END_DISCARD

__all__ = [
    "CODEBASE_VERSION",
    "ExportReport",
    "LeRobotFormatError",
    "export_lerobot",
    "from_lerobot",
]

CODEBASE_VERSION = "v3.0"  # the LeRobotDataset format version written (and read back)
CHUNKS_SIZE = 1000  # files per chunk folder, LeRobot's default
DATA_FILE_MB = 100  # a data file is closed once it passes this size, LeRobot's default
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
IMAGE_KEY = "observation.images.camera"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
# Columns of another tool's dataset that can hold the intervention flag, tried in this order.
INTERVENTION_KEYS = ("intervention", "complementary_info.is_intervention", "is_intervention")


class LeRobotFormatError(ValueError):
    """A directory that is not a LeRobotDataset this module can read, or bags it cannot export."""


@dataclass
class ExportReport:
    out: Path
    episodes: int = 0
    frames: int = 0
    interventions: int = 0
    camera: bool = False
    exported: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        text = (
            f"{self.frames} frames in {self.episodes} episodes ({self.interventions} intervened)"
            f"{' with camera' if self.camera else ''} -> {self.out} ({self.bytes / 1e6:.2f} MB, {self.seconds:.1f} s)"
        )
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + "; ".join(f"{p.name} ({why})" for p, why in self.skipped)
        return text


# ---- bags -> LeRobotDataset ---------------------------------------------------------------------


@dataclass
class _Episode:
    bag: Path
    meta: dict[str, Any]
    columns: dict[str, np.ndarray]
    images: list[bytes] | None
    success: bool
    end_reason: str
    obs_names: list[str]
    act_names: list[str]


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _image_rgb(msg) -> np.ndarray:
    """A sensor_msgs/Image as an (H, W, 3) uint8 array; rgb8, bgr8, rgba8, bgra8 and mono8 only."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise LeRobotFormatError(f"camera image encoding {msg.encoding!r} is not supported (rgb8, bgr8, mono8)")
    data = np.frombuffer(bytes(msg.data), np.uint8)
    rows = data[: msg.step * msg.height].reshape(msg.height, msg.step)
    img = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding.startswith("bgr"):
        img = img[..., [2, 1, 0]]
    elif channels == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)  # fast; PNG is lossless at any level
    return buf.getvalue()


def _camera_frames(bag: EpisodeBag, stamps: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Per step the newest image stamped at or before it (the first image for earlier steps);
    returns the frames and how many steps had no image of their own stamp."""
    by_stamp: dict[int, Any] = {}
    for m in bag.topic(CAMERA_TOPIC):
        msg = m.decode()
        by_stamp.setdefault(_stamp(msg), msg)
    keys = np.array(sorted(by_stamp), np.int64)
    idx = np.clip(np.searchsorted(keys, stamps, side="right") - 1, 0, len(keys) - 1)
    frames = [_image_rgb(by_stamp[int(keys[i])]) for i in idx]
    return frames, int((keys[idx] != stamps).sum())


def _read_episode(path: Path, bag: EpisodeBag, camera: bool) -> _Episode:
    why = _incomplete(path, bag)
    if why:
        raise LeRobotFormatError(f"not a complete episode: {why}")
    steps = episode_steps(bag)
    n = len(steps.stamps)
    if n == 0:
        raise LeRobotFormatError("no complete step")
    first_obs = next(m for m in bag.messages if m.topic == "/mile/observation").decode()
    first_act = next(m for m in bag.messages if m.topic == "/mile/proposed_action").decode()
    prob = {}
    for m in bag.topic("/mile/intervention_probability"):
        msg = m.decode()
        if len(msg.position):
            prob.setdefault(_stamp(msg), float(msg.position[0]))
    p = np.array([prob.get(int(s), np.nan) for s in steps.stamps], np.float32)
    success = bool(bag.metadata.get("success", False))
    end_reason = steps.end_reason or str(bag.metadata.get("end_reason", ""))
    ends = bag.topic("/sim/episode_end")
    if ends and "success" not in bag.metadata:
        end = ends[0].decode()
        success = bool(dict(zip(end.name, end.position)).get("success", 0.0))
    done = np.zeros(n, bool)
    done[-1] = True
    columns = {
        "observation.state": steps.observation.astype(np.float32),
        "action": steps.executed_action.astype(np.float32),
        "robot_action": steps.robot_action.astype(np.float32),
        "human_action": steps.human_action.astype(np.float32),
        "intervention": steps.intervention.astype(bool),
        "intervention_probability": p,
        "next.done": done,
        "next.success": done & success,
        "stamp_ns": steps.stamps.astype(np.int64),
    }
    images = None
    if camera:
        if not bag.topic(CAMERA_TOPIC):
            raise LeRobotFormatError(f"no {CAMERA_TOPIC} (other bags have it; --no-camera exports without)")
        frames, _ = _camera_frames(bag, steps.stamps)
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise LeRobotFormatError(f"camera images change size within the episode: {sorted(shapes)}")
        columns["_image_shape"] = np.array(frames[0].shape)
        images = [_png(f) for f in frames]
    return _Episode(
        path,
        bag.metadata,
        columns,
        images,
        success,
        end_reason,
        list(first_obs.name) or [f"obs_{k}" for k in range(steps.observation.shape[1])],
        list(first_act.name) or [f"a_{k}" for k in range(steps.robot_action.shape[1])],
    )


def _vector_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-feature statistics over frames (rows); NaN entries (no human action) left out."""
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        values = values[:, None]
    finite = np.isfinite(values).all(1)
    v = values[finite]
    out: dict[str, list] = {"count": [len(v)]}
    if len(v) == 0:  # e.g. no intervention at all: LeRobot's stats need numbers, NaN says "none"
        nan = [float("nan")] * values.shape[1]
        out.update({k: nan for k in ("min", "max", "mean", "std")})
        out.update({f"q{int(q * 100):02d}": nan for q in QUANTILES})
        return out
    out.update(
        {"min": v.min(0).tolist(), "max": v.max(0).tolist(), "mean": v.mean(0).tolist(), "std": v.std(0).tolist()}
    )
    for q in QUANTILES:
        out[f"q{int(q * 100):02d}"] = np.quantile(v, q, axis=0).tolist()
    return out


def _image_stats(pixels: np.ndarray, count: int) -> dict[str, list]:
    """Per-channel statistics of (N, 3) pixel values in [0, 1], shaped (3, 1, 1) as LeRobot keeps them."""
    s = _vector_stats(pixels)
    s["count"] = [count]
    return {k: ([[[x]] for x in v] if k != "count" else v) for k, v in s.items()}


def _features(ep: _Episode, camera_shape: tuple[int, ...] | None) -> dict[str, dict]:
    obs_dim, act_dim = ep.columns["observation.state"].shape[1], ep.columns["action"].shape[1]
    feats: dict[str, dict] = {
        "observation.state": {"dtype": "float32", "shape": [obs_dim], "names": ep.obs_names},
        "action": {"dtype": "float32", "shape": [act_dim], "names": ep.act_names},
        "robot_action": {"dtype": "float32", "shape": [act_dim], "names": ep.act_names},
        "human_action": {"dtype": "float32", "shape": [act_dim], "names": ep.act_names},
        "intervention": {"dtype": "bool", "shape": [1], "names": None},
        "intervention_probability": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "stamp_ns": {"dtype": "int64", "shape": [1], "names": None},
    }
    if camera_shape is not None:
        feats[IMAGE_KEY] = {"dtype": "image", "shape": list(camera_shape), "names": ["height", "width", "channels"]}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        feats[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
    return feats


def _arrow_column(values: np.ndarray, ft: dict):
    import pyarrow as pa

    arrow_type = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[ft["dtype"]]
    if ft["shape"] == [1]:
        return pa.array(np.asarray(values).reshape(-1), type=arrow_type)
    flat = pa.array(np.asarray(values).reshape(-1), type=arrow_type)
    return pa.FixedSizeListArray.from_arrays(flat, ft["shape"][0])


def _episode_table(ep: _Episode, index: int, start: int, task_index: int, fps: int, feats: dict):
    import pyarrow as pa

    n = len(ep.columns["stamp_ns"])
    stamps = ep.columns["stamp_ns"]
    cols = dict(ep.columns)
    cols.pop("_image_shape", None)
    cols["timestamp"] = ((stamps - stamps[0]) / 1e9).astype(np.float32)  # the recorded time, gaps included
    cols["frame_index"] = np.arange(n, dtype=np.int64)
    cols["episode_index"] = np.full(n, index, np.int64)
    cols["index"] = np.arange(start, start + n, dtype=np.int64)
    cols["task_index"] = np.full(n, task_index, np.int64)
    arrays, names = [], []
    for key, ft in feats.items():
        if ft["dtype"] == "image":
            image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
            arrays.append(pa.array([{"bytes": b, "path": None} for b in ep.images], type=image_type))
        else:
            arrays.append(_arrow_column(cols[key], ft))
        names.append(key)
    return pa.Table.from_arrays(arrays, names=names)


def _episode_stats(ep: _Episode, table, feats: dict, png_pixels: np.ndarray | None) -> dict[str, dict]:
    stats = {}
    for key, ft in feats.items():
        if ft["dtype"] == "image":
            stats[key] = _image_stats(png_pixels, len(table))
        else:
            col = table.column(key).combine_chunks()
            values = col.flatten().to_numpy(zero_copy_only=False) if ft["shape"] != [1] else col.to_numpy(False)
            stats[key] = _vector_stats(np.asarray(values, np.float64).reshape(len(table), -1))
    return stats


def _aggregate(per_episode: list[dict[str, dict]]) -> dict[str, dict]:
    """Dataset statistics from the episodes': exact min, max, mean and std; quantiles count-weighted."""
    out: dict[str, dict] = {}
    for key in per_episode[0]:
        parts = [s[key] for s in per_episode if s[key]["count"][0] > 0]
        if not parts:
            out[key] = per_episode[0][key]
            continue
        counts = np.array([p["count"][0] for p in parts], np.float64)
        w = counts / counts.sum()
        mean = sum(wi * np.asarray(p["mean"], np.float64) for wi, p in zip(w, parts))
        var = sum(
            wi * (np.asarray(p["std"], np.float64) ** 2 + (np.asarray(p["mean"], np.float64) - mean) ** 2)
            for wi, p in zip(w, parts)
        )
        agg = {
            "min": np.min([np.asarray(p["min"]) for p in parts], 0).tolist(),
            "max": np.max([np.asarray(p["max"]) for p in parts], 0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(var).tolist(),
            "count": [int(counts.sum())],
        }
        for q in QUANTILES:
            name = f"q{int(q * 100):02d}"
            agg[name] = sum(wi * np.asarray(p[name], np.float64) for wi, p in zip(w, parts)).tolist()
        out[key] = agg
    return out


def _json_safe(obj):
    """NaN and infinity as null: JSON has no NaN, and LeRobot reads stats.json with the json module."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def export_lerobot(
    bags: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    task: str | None = None,
    modes: Sequence[str] = ("train", "eval"),
    include_discarded: bool = False,
    camera: bool | None = None,
    fps: int | None = None,
    robot_type: str | None = None,
    overwrite: bool = False,
) -> ExportReport:
    """Write the episode bags ``bags`` (a folder searched like the trainer's, or a list) as a LeRobotDataset.

    Bags that are not complete episodes, are unreadable, or hold a mode not in ``modes`` are skipped and
    named in the report (``include_discarded`` keeps episodes the operator discarded). ``camera``: None
    exports the camera stream when the first usable bag has one. ``task``: the episodes' task text
    (default: each bag's ``task`` metadata). ``fps`` defaults to the median step period. The dataset is
    written under a temporary sibling and moved to ``out`` at the end, so ``out`` is never half-written.
    """
    t0 = time.perf_counter()
    out = Path(out)
    bag_list = find_bags(bags) if isinstance(bags, (str, os.PathLike)) else [Path(b) for b in bags]
    if out.exists() and not overwrite:
        raise LeRobotFormatError(f"{out} exists; refusing to overwrite it (--overwrite replaces it)")
    report = ExportReport(out)
    episodes: list[_Episode] = []
    for path in bag_list:
        try:
            bag = read_bag(path)
            mode = bag.metadata.get("mode", "train")
            if mode not in modes:
                report.skipped.append((path, f"mode {mode} not exported"))
                continue
            # The first exported episode decides whether the dataset has a camera.
            use_camera = episodes[0].images is not None if episodes else camera
            if use_camera is None:
                use_camera = bool(bag.topic(CAMERA_TOPIC))
            ep = _read_episode(path, bag, use_camera)
        except (BagError, LeRobotFormatError, OSError, ValueError) as exc:
            report.skipped.append((path, str(exc)))
            continue
        if (ep.meta.get("discarded") or ep.end_reason == END_DISCARD) and not include_discarded:
            report.skipped.append((path, "discarded by the operator (--include-discarded exports it)"))
            continue
        if episodes:
            first = episodes[0]
            for key in ("observation.state", "action"):
                if ep.columns[key].shape[1] != first.columns[key].shape[1]:
                    report.skipped.append(
                        (path, f"{key} has {ep.columns[key].shape[1]} entries, not {first.columns[key].shape[1]}")
                    )
                    break
            else:
                if use_camera and tuple(ep.columns["_image_shape"]) != tuple(first.columns["_image_shape"]):
                    report.skipped.append((path, "camera image size differs from the first episode's"))
                    continue
                episodes.append(ep)
            continue
        episodes.append(ep)
    if not episodes:
        raise LeRobotFormatError(
            "no episode to export"
            + (": " + "; ".join(f"{p.name} ({why})" for p, why in report.skipped) if report.skipped else "")
        )
    report.camera = episodes[0].images is not None
    work = out.parent / f".{out.name}.export"
    shutil.rmtree(work, ignore_errors=True)
    try:
        _write(work, episodes, report, task, fps, robot_type)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report.bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    report.seconds = time.perf_counter() - t0
    return report


def _write(root: Path, episodes: list[_Episode], report: ExportReport, task, fps, robot_type) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fps is None:
        periods = np.concatenate(
            [np.diff(e.columns["stamp_ns"]) for e in episodes if len(e.columns["stamp_ns"]) > 1] or [np.array([5e7])]
        )
        fps = max(1, round(1e9 / float(np.median(periods))))
    shape = tuple(int(x) for x in episodes[0].columns["_image_shape"]) if report.camera else None
    feats = _features(episodes[0], shape)
    tasks: dict[str, int] = {}
    rows, ep_stats = [], []
    chunk, file_idx, writer, written_mb = 0, 0, None, 0.0
    start = 0
    try:
        for index, ep in enumerate(episodes):
            text = task or str(ep.meta.get("task") or "mile_ros episode")
            task_index = tasks.setdefault(text, len(tasks))
            table = _episode_table(ep, index, start, task_index, fps, feats)
            pixels = None
            if report.camera:  # channel statistics from a few frames, as LeRobot samples them
                from PIL import Image

                pick = np.unique(np.linspace(0, len(ep.images) - 1, min(len(ep.images), 20)).astype(int))
                pixels = np.concatenate(
                    [np.asarray(Image.open(io.BytesIO(ep.images[i]))).reshape(-1, 3) / 255.0 for i in pick]
                )
            stats = _episode_stats(ep, table, feats, pixels)
            ep_stats.append(stats)
            if writer is not None and written_mb >= DATA_FILE_MB:  # whole episodes per file
                writer.close()
                writer = None
                file_idx += 1
                chunk, file_idx = (chunk + 1, 0) if file_idx >= CHUNKS_SIZE else (chunk, file_idx)
            if writer is None:
                path = root / DATA_PATH.format(chunk_index=chunk, file_index=file_idx)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(path, table.schema)
                written_mb = 0.0
            writer.write_table(table)
            written_mb += table.nbytes / 2**20
            n = len(table)
            row = {
                "episode_index": index,
                "tasks": [text],
                "length": n,
                "data/chunk_index": chunk,
                "data/file_index": file_idx,
                "dataset_from_index": start,
                "dataset_to_index": start + n,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "success": ep.success,
                "end_reason": ep.end_reason,
                "mode": str(ep.meta.get("mode", "train")),
                "interventions": int(ep.columns["intervention"].sum()),
                "iteration": int(ep.meta.get("iteration", -1)),
                "session_episode": int(ep.meta.get("episode", -1)),
                "bag": str(ep.bag),
            }
            for key, s in stats.items():
                if feats[key]["dtype"] != "image":
                    for name, value in s.items():
                        row[f"stats/{key}/{name}"] = [float(x) for x in value]
            rows.append(row)
            start += n
            report.exported.append(ep.bag)
            report.interventions += int(ep.columns["intervention"].sum())
    finally:
        if writer is not None:
            writer.close()
    report.episodes, report.frames = len(episodes), start
    ep_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), ep_path)
    pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks)).to_parquet(root / "meta" / "tasks.parquet")
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": start,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": 200,
        "fps": int(fps),
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": None,  # the camera is stored as images inside the data files
        "features": feats,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (root / "meta" / "stats.json").write_text(json.dumps(_json_safe(_aggregate(ep_stats)), indent=4))


# ---- LeRobotDataset -> training data ------------------------------------------------------------


def from_lerobot(
    root: str | os.PathLike,
    observation_key: str = "observation.state",
    action_key: str = "action",
    intervention_key: str | None = None,
    robot_action_key: str | None = "robot_action",
    human_action_key: str | None = "human_action",
    action_bounds: tuple[float, float] | None = None,
    frame_stack: int = 3,
) -> tuple[InterventionDataset, list[str]]:
    """A LeRobotDataset (v3.0, read with pyarrow) with an intervention column as an :class:`InterventionDataset`.

    The intervention flag is ``intervention_key`` or the first of :data:`INTERVENTION_KEYS` present.
    The human's action is ``human_action_key`` where present, else the executed ``action`` on
    intervened frames; the robot's is ``robot_action_key`` where present, else the executed action,
    which on intervened frames is the human's (noted in the returned notes: the proposal the human
    overrode was not recorded). Action bounds default to [-1, 1] when every action lies in it, else
    the actions' own range. Returns the dataset and notes about what stood in for what.
    """
    import pyarrow.parquet as pq

    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise LeRobotFormatError(f"{root} is not a LeRobotDataset: no meta/info.json")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LeRobotFormatError(f"{info_path}: {exc}") from exc
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise LeRobotFormatError(
            f"{root}: LeRobotDataset format {version or '?'}; only v3.x is read "
            "(convert older ones with LeRobot's converter)"
        )
    feats = info.get("features", {})
    if intervention_key is None:
        intervention_key = next((k for k in INTERVENTION_KEYS if k in feats), None)
        if intervention_key is None:
            raise LeRobotFormatError(
                f"{root} has no intervention column (looked for {', '.join(INTERVENTION_KEYS)}; "
                "--intervention-key names another)"
            )
    for key in (observation_key, action_key, intervention_key):
        if key not in feats:
            raise LeRobotFormatError(f"{root} has no feature {key!r} (it has {', '.join(sorted(feats))})")
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise LeRobotFormatError(f"{root} has no data/*/*.parquet file")
    wanted = {observation_key, action_key, intervention_key, "episode_index", "frame_index"}
    have_robot = bool(robot_action_key) and robot_action_key in feats
    have_human = bool(human_action_key) and human_action_key in feats
    wanted |= {robot_action_key} if have_robot else set()
    wanted |= {human_action_key} if have_human else set()
    import pyarrow as pa

    table = pa.concat_tables([pq.read_table(f, columns=sorted(wanted)) for f in files])

    def matrix(key: str) -> np.ndarray:
        col = table.column(key).combine_chunks()
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            width = int(feats[key]["shape"][0])
            return np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(len(table), width)
        return np.asarray(col.to_numpy(zero_copy_only=False), np.float64).reshape(len(table), -1)

    obs = matrix(observation_key)
    executed = matrix(action_key)
    flag = matrix(intervention_key)[:, 0] > 0.5
    notes = []
    human = matrix(human_action_key) if have_human else np.where(flag[:, None], executed, np.nan)
    if not have_human:
        notes.append(f"human action: the executed {action_key!r} on intervened frames")
    if have_robot:
        robot = matrix(robot_action_key)
    else:
        robot = executed
        notes.append(
            f"robot action: the executed {action_key!r}; on the {int(flag.sum())} intervened frames "
            "that is the human's "
            "(the robot's overridden proposal was not recorded)"
        )
    human = np.where(flag[:, None], human, np.nan)
    episode = np.asarray(table.column("episode_index").to_numpy(), np.int64)
    step = np.asarray(table.column("frame_index").to_numpy(), np.int64)
    d = executed.shape[1]
    if action_bounds is None:
        acts = np.concatenate([executed, robot, human[flag]])
        if np.all(np.abs(acts) <= 1.0 + 1e-6):
            action_bounds = (-1.0, 1.0)
            low, high = (-1.0,) * d, (1.0,) * d
        else:
            low, high = tuple(acts.min(0).tolist()), tuple(acts.max(0).tolist())
            notes.append("action bounds: the actions' own range (they leave [-1, 1])")
    else:
        low, high = (float(action_bounds[0]),) * d, (float(action_bounds[1]),) * d
    spec = Spec(obs.shape[1], d, frame_stack=frame_stack, action_low=low, action_high=high)
    return InterventionDataset(spec, obs, robot, flag, human, episode, step), notes
