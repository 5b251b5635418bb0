"""``mile-ros export``: a session's episode bags as a LeRobotDataset (v3.0), or a LeRobot dataset back.

``mile-ros export --lerobot BAGS OUT`` writes every complete episode bag under ``BAGS`` (train and eval
episodes; discarded ones with ``--include-discarded``) as a LeRobotDataset in ``OUT``: the executed
action as ``action``, the robot's proposal, the human's action, the intervention flag, the predicted
``P(I=1|s)``, each episode's success and end reason, and the camera where the bags have it.
``mile-ros export --from-lerobot DIR OUT.npz`` turns a LeRobotDataset with an intervention column into
the project's dataset file (``InterventionDataset``), which every method trains on and
``mile-ros train --prior`` takes. ``--bench N`` times the export of N steps of generated bags.
Exit status 0: written; 2: bad input (each bag left out is named).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="episode bags as a LeRobotDataset (v3.0), or a LeRobot dataset as training data",
        description=__doc__.splitlines()[0].strip("`"),
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--lerobot", nargs=2, type=Path, metavar=("BAGS", "OUT"), help="bags folder -> LeRobotDataset")
    how.add_argument(
        "--from-lerobot", nargs=2, type=Path, metavar=("DIR", "OUT.npz"), help="LeRobotDataset -> dataset file"
    )
    how.add_argument("--bench", type=int, metavar="STEPS", help="time an export of this many generated steps")
    p.add_argument("--task", help="the episodes' task text (default: each bag's task)")
    p.add_argument("--modes", default="train,eval", help="episode modes to export (default train,eval)")
    p.add_argument("--include-discarded", action="store_true", help="also export episodes the operator discarded")
    p.add_argument("--no-camera", action="store_true", help="leave the camera images out")
    p.add_argument("--fps", type=int, help="frames per second (default: the bags' median step period)")
    p.add_argument("--robot-type", help="info.json's robot_type")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--intervention-key", help="--from-lerobot: the intervention column (default: found)")
    p.add_argument("--observation-key", default="observation.state", help="--from-lerobot: observation column")
    p.add_argument("--action-key", default="action", help="--from-lerobot: executed action column")
    p.add_argument("--frame-stack", type=int, default=3, help="--from-lerobot: the spec's frame stack (default 3)")
    p.add_argument("--camera", action="store_true", help="--bench: with a 224x224 camera image per step")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mile_ros.graph.bag_dataset import BagDatasetError
    from mile_ros.graph.lerobot import LeRobotFormatError
    from mile_ros.learning import DatasetError

    try:
        if args.bench is not None:
            return _bench(args)
        if args.lerobot:
            return _export(args)
        return _from_lerobot(args)
    except (LeRobotFormatError, BagDatasetError, DatasetError) as exc:  # DatasetError: NaN rows, no human action
        print(f"mile-ros export: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mile-ros export: {exc}", file=sys.stderr)
        return 4


def _export(args: argparse.Namespace) -> int:
    from mile_ros.graph.lerobot import export_lerobot

    bags, out = args.lerobot
    report = export_lerobot(
        bags,
        out,
        task=args.task,
        modes=tuple(m for m in args.modes.split(",") if m),
        include_discarded=args.include_discarded,
        camera=False if args.no_camera else None,
        fps=args.fps,
        robot_type=args.robot_type,
        overwrite=args.overwrite,
    )
    for path, why in report.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(report.summary())
    return 0


def _from_lerobot(args: argparse.Namespace) -> int:
    from mile_ros.graph.lerobot import LeRobotFormatError, from_lerobot

    src, out = args.from_lerobot
    if out.exists() and not args.overwrite:
        raise LeRobotFormatError(f"{out} exists; refusing to overwrite it (--overwrite replaces it)")
    ds, notes = from_lerobot(
        src,
        observation_key=args.observation_key,
        action_key=args.action_key,
        intervention_key=args.intervention_key,
        frame_stack=args.frame_stack,
    )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    ds.save(out)
    print(
        f"{len(ds)} steps in {len(ds.episodes)} episodes ({int(ds.intervention.sum())} intervened, "
        f"obs {ds.spec.obs_dim}, actions {ds.spec.act_dim}) -> {out}"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Export ``args.bench`` steps of generated episode bags (500-step episodes, 10% intervened) and
    print the size and the time per 1,000 steps, with the time to read the bags alone for scale."""
    import numpy as np
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from mile_ros.graph.bag_dataset import build_dataset, find_bags
    from mile_ros.graph.bag_episode import EpisodeBagWriter
    from mile_ros.graph.lerobot import export_lerobot
    from mile_ros.graph.topics import ACTION_NAMES, CAMERA_TOPIC, RECORDED_TOPICS, TOPICS
    from mile_ros.nodes.common import to_time, vector_msg

    steps_total, per_episode, size = int(args.bench), 500, 224
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        topics = {t: TOPICS[t].type for t in RECORDED_TOPICS}
        if args.camera:
            topics[CAMERA_TOPIC] = TOPICS[CAMERA_TOPIC].type
        left, k = steps_total, 0
        t0 = time.perf_counter()
        while left > 0:
            n = min(per_episode, left)
            writer = EpisodeBagWriter(root / "bags" / f"train_{k:03d}", topics, flush_every=64)
            for i in range(n + 1):
                stamp = 10**9 + i * 50_000_000
                human = rng.uniform() < 0.1 and i < n
                obs = rng.normal(size=39)
                act = rng.uniform(-1, 1, 4)
                msgs = [
                    ("/mile/observation", vector_msg(stamp, [f"obs_{j:02d}" for j in range(39)], obs)),
                    ("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, act)),
                    ("/mile/intervention_probability", vector_msg(stamp, ["p_intervene"], [rng.uniform()])),
                    ("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, act, "human" if human else "robot")),
                ]
                if human:
                    msgs.append(("/mile/human_action", vector_msg(stamp, ACTION_NAMES, act, "human")))
                if args.camera:
                    img = Image(height=size, width=size, encoding="rgb8", step=size * 3)
                    img.header.stamp = to_time(stamp)
                    # A smooth picture with a little noise, closer to a rendering than pure noise.
                    y, x = np.mgrid[0:size, 0:size]
                    pic = np.stack([(x + i) % 256, (y + 2 * i) % 256, (x + y) % 256], -1)
                    img.data = (pic + rng.integers(0, 8, pic.shape)).clip(0, 255).astype(np.uint8).tobytes()
                    msgs.append((CAMERA_TOPIC, img))
                if i == n:
                    names = ["steps", "success", "return", "duration_s"]
                    msgs.append(("/sim/episode_end", vector_msg(stamp, names, [n, 1, 0, n * 0.05], "success")))
                for topic, msg in msgs:
                    writer.write(topic, serialize_message(msg), stamp)
            writer.close({"task": "bench", "mode": "train", "iteration": 0, "episode": k})
            left -= n
            k += 1
        made = time.perf_counter() - t0
        bag_bytes = sum(f.stat().st_size for f in (root / "bags").rglob("*") if f.is_file())
        t0 = time.perf_counter()
        report = build_dataset(find_bags(root / "bags"), quarantine=False)
        read_s = time.perf_counter() - t0
        rows = len(report.dataset) if report.dataset is not None else 0
        result = export_lerobot(root / "bags", root / "lerobot")
    per = 1000.0 / max(1, result.frames)
    print(
        f"{result.frames} steps in {result.episodes} episodes{' with 224x224 camera' if args.camera else ''}: "
        f"bags {bag_bytes / 1e6:.2f} MB written in {made:.1f} s"
    )
    print(
        f"export: {result.bytes / 1e6:.2f} MB, {result.seconds:.2f} s -> per 1,000 steps "
        f"{result.bytes * per / 1e6:.3f} MB and {result.seconds * per:.2f} s"
    )
    print(
        f"reading the bags alone (the trainer's dataset builder, {rows} steps): {read_s:.2f} s; "
        f"export / read = {result.seconds / max(read_s, 1e-9):.2f}; "
        f"dataset / bags size = {result.bytes / bag_bytes:.2f}"
    )
    return 0
