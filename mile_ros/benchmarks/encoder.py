"""``mile-ros bench encoder``: R3M latency per frame and throughput, on the CPU and the GPU if any.

Prints measured figures only. The encoder's speed does not depend on its weights, so it runs with an
untrained ResNet-50 unless ``--checkpoint`` is given.
"""

from __future__ import annotations

import argparse
import statistics
import time

from .common import percentile

CONTROL_HZ = 10.0  # the real robot's camera and control rate (config/widowx.yaml), which the encoder must keep up with


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="", help="R3M model.pt (default: untrained weights, same speed)")
    parser.add_argument("--frames", type=int, default=20, help="timed single frames per device (default 20)")
    parser.add_argument("--batch", type=int, default=8, help="batch size for the throughput run (default 8)")
    parser.add_argument("--height", type=int, default=480, help="camera image height before Resize/Crop")
    parser.add_argument("--width", type=int, default=640, help="camera image width before Resize/Crop")
    parser.add_argument("--devices", default="auto", help="comma list (cpu,cuda); auto: cpu plus cuda if present")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")


def run(args: argparse.Namespace) -> int:
    """Time R3M on each device: single frames, then a batch."""
    import numpy as np
    import torch

    from mile_ros.robot.r3m import R3MEncoder

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = (
        ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
        if args.devices == "auto"
        else [d.strip() for d in args.devices.split(",") if d.strip()]
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    batch = np.stack([image] * args.batch)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; image {args.height}x{args.width} "
        f"-> Resize(256)+CenterCrop(224) -> ResNet-50 (2048-d)"
        + ("" if args.checkpoint else "; untrained weights (speed does not depend on them)")
    )
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: GPU figures not measured")
    for device in devices:
        encoder = R3MEncoder(args.checkpoint or None, device=device, allow_random_weights=not args.checkpoint)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for _ in range(3):  # warm-up: allocator, cuDNN autotuning, lazy init
            encoder.encode(image)
        sync()
        latencies = []
        for _ in range(args.frames):
            start = time.perf_counter()
            encoder.encode(image)  # includes preprocessing and the copy back to the CPU
            sync()
            latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        repeats = max(1, args.frames // args.batch)
        for _ in range(repeats):
            encoder.encode(batch)
        sync()
        throughput = repeats * args.batch / (time.perf_counter() - start)
        median = statistics.median(latencies)
        period = 1.0 / CONTROL_HZ
        keeps_up = "yes" if percentile(latencies, 90) < period else "no"
        print(
            f"[{device}] latency per frame (batch 1, {args.frames} frames): median {median * 1e3:.1f} ms, "
            f"p90 {percentile(latencies, 90) * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms; "
            f"achievable rate {1 / median:.1f} Hz"
        )
        print(f"[{device}] throughput (batch {args.batch}): {throughput:.1f} frames/s")
        print(f"[{device}] keeps up with a {CONTROL_HZ:g} Hz loop (p90 latency < {period * 1e3:.0f} ms): {keeps_up}")
    return 0
