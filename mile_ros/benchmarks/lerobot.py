"""``mile-ros bench lerobot``: the LeRobotDataset export's size and time per 1,000 steps.

Writes generated episode bags (500-step episodes, 39-d observations, 10% intervened; ``--camera``: a
224x224 rgb8 image per step, a gradient with noise), exports them with ``mile-ros export --lerobot``'s
code and prints the size and the time per 1,000 steps, with the time the trainer's dataset builder takes
to read the same bags for scale. Prints measured figures only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=5000, help="generated steps to export (default 5000)")
    parser.add_argument("--camera", action="store_true", help="with a 224x224 camera image per step")


def run(args: argparse.Namespace) -> int:
    """Export ``args.steps`` steps of generated episode bags (500-step episodes, 10% intervened) and
    print the size and the time per 1,000 steps, with the time to read the bags alone for scale."""
    if args.steps < 1:
        print(f"mile-ros bench lerobot: --steps must be at least 1, got {args.steps}", file=sys.stderr)
        return 2
    import numpy as np
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from mile_ros.graph.bag_dataset import build_dataset, find_bags
    from mile_ros.graph.bag_episode import EpisodeBagWriter
    from mile_ros.graph.lerobot import export_lerobot
    from mile_ros.graph.topics import ACTION_NAMES, CAMERA_TOPIC, RECORDED_TOPICS, TOPICS
    from mile_ros.nodes.common import to_time, vector_msg

    steps_total, per_episode, size = int(args.steps), 500, 224
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
