"""``mile-ros bench graph``: the node graph's speed, measured on real processes over real DDS.

- ``loop``: bridge (real time, rendering), policy, arbitration, simulated human and recorder at
  ``--rate`` Hz for ``--duration`` s; prints the achieved rate, observation -> proposal latency
  (policy node) and proposal -> executed latency (arbitration), each publish to publish (DDS source
  timestamps) and as arrivals at one listener.
- ``recorder``: 224x224 rgb8 images at 30 Hz plus state and action topics into the recorder for
  ``--duration`` s; prints messages published, recorded and lost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import percentiles


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("part", choices=("loop", "recorder", "all"), nargs="?", default="all")
    p.add_argument(
        "--duration", type=float, default=30.0, help="seconds measured per part (issue: 300 for the recorder)"
    )
    p.add_argument("--rate", type=float, default=20.0, help="control rate of the loop part, Hz (default 20)")
    p.add_argument("--no-render", action="store_true", help="loop part without camera rendering")
    p.add_argument(
        "--arbitration-nice", type=int, default=-10, help="loop part: arbitration's niceness as in config/ (-10)"
    )
    p.add_argument(
        "--arbitration-rt",
        type=int,
        default=50,
        help="loop part: arbitration's SCHED_FIFO priority, realtime_priority, as in config/ (50; 0: off)",
    )
    p.add_argument(
        "--policy-rt",
        type=int,
        default=40,
        help="loop part: the policy node's SCHED_FIFO priority, realtime_priority, as in config/ (40; 0: off)",
    )
    p.add_argument("--image-rate", type=float, default=30.0, help="recorder part: image rate, Hz (default 30)")


def first_seen(probe, topic: str) -> tuple[dict[int, float], dict[int, int]]:
    """Header stamp -> arrival time at the listener (s) and -> when its sender published it (DDS
    source timestamp, ns); the first message of each stamp."""
    from mile_ros.nodes.common import stamp_ns

    arrived: dict[int, float] = {}
    sent: dict[int, int] = {}
    with probe.cond:
        for (t, m), info in zip(probe.received[topic], probe.infos[topic], strict=True):
            stamp = stamp_ns(m)
            if stamp not in arrived:
                arrived[stamp], sent[stamp] = t, info["source_timestamp"]
    return arrived, sent


def bench_loop(args: argparse.Namespace, work: Path) -> None:
    from std_srvs.srv import Trigger

    from mile_ros.learning import MileCheckpoint, build_policy
    from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id
    from mile_ros.sim import make_env

    env = make_env("drawer-open-v3")
    spec, episode_steps = env.spec, env.max_steps
    env.close()
    ckpt = work / "policy.pt"
    net = build_policy(spec.stacked_dim, spec.act_dim, False, (256, 256))  # the authors' size
    MileCheckpoint(spec, net, build_policy(spec.stacked_dim, spec.act_dim, False, (256, 256)), 60.0, 75.0).save(ckpt)
    domain = unique_domain_id()
    render = not args.no_render
    nodes = [
        NodeProcess(
            "metaworld_bridge",
            domain,
            {
                "lockstep": False,
                "control_rate_hz": args.rate,
                "render": render,
                "stop_on_success": False,
            },
            work,
        ),
        NodeProcess("policy_node", domain, {"checkpoint": str(ckpt), "realtime_priority": args.policy_rt}, work),
        NodeProcess(
            "arbitration_node",
            domain,
            {"wait_for_teleop": False, "nice": args.arbitration_nice, "realtime_priority": args.arbitration_rt},
            work,
        ),
        NodeProcess("simulated_human", domain, {"checkpoint": str(ckpt), "mental_rollouts": 2}, work),
        NodeProcess("recorder_node", domain, {"output_dir": str(work), "record_camera": render}, work),
    ]
    probe = Probe(domain)
    try:
        for t in ("/robot/state", "/mile/proposed_action", "/mile/executed_action"):
            probe.listen(t, depth=5000)
        deadline = time.monotonic() + 300
        while not probe.call("/simulated_human/reset", Trigger, timeout=120).success:
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated human did not get ready")
            time.sleep(0.5)
        probe.record("recorder_node", str(work / "loop_bag"))
        # Metaworld ends an episode after max_path_length steps (25 s at 20 Hz): start episodes back
        # to back so that the whole duration is measured (a p99 over 500 samples is too noisy).
        end = time.monotonic() + args.duration
        while (left := end - time.monotonic()) > 0:
            probe.call("/episode/reset", Trigger, timeout=60)
            time.sleep(min(left, episode_steps / args.rate - 0.5))
        (state, state_sent), (prop, prop_sent), (execd, exec_sent) = (
            first_seen(probe, t) for t in ("/robot/state", "/mile/proposed_action", "/mile/executed_action")
        )
        probe.stop_recording("recorder_node", str(work / "loop_bag"))
    finally:
        probe.close()
        for n in nodes:
            n.stop()
    times = sorted(state.values())
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    periods = np.diff(times) * 1000
    print(f"loop ({'with' if render else 'without'} 224x224 rendering, {args.rate:g} Hz target, {args.duration:g} s):")
    print(
        f"  achieved {(len(times) - 1) / span:.2f} Hz over {len(times)} steps; step period {percentiles(list(periods))}"
    )

    # Two views of each latency. "arrivals": when the listener took each message (includes the
    # listener's own wait for a core). "sent": the DDS source timestamps of the two messages, i.e.
    # from the upstream node's publish to the downstream node's publish, with no listener in it.
    def both(up, up_sent, down, down_sent) -> str:
        arrivals = percentiles([(down[s] - up[s]) * 1000 for s in down if s in up])
        sent = percentiles([(down_sent[s] - up_sent[s]) / 1e6 for s in down_sent if s in up_sent])
        return f"sent {sent}\n{'':27}arrivals {arrivals}"

    print(f"  observation -> proposal: {both(state, state_sent, prop, prop_sent)}")
    print(f"  proposal -> executed:    {both(prop, prop_sent, execd, exec_sent)}")
    answered = sum(s in execd for s in state)
    print(f"  observations answered with a command: {answered} of {len(state)}")


def bench_recorder(args: argparse.Namespace, work: Path) -> None:
    from sensor_msgs.msg import Image

    from mile_ros.graph.bag_episode import read_bag
    from mile_ros.graph.topics import ACTION_NAMES
    from mile_ros.nodes.common import to_time, vector_msg
    from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

    domain = unique_domain_id()
    node = NodeProcess("recorder_node", domain, {"output_dir": str(work), "record_camera": True}, work)
    probe = Probe(domain)
    counts = dict.fromkeys(("/camera/image_raw", "/robot/state", "/mile/proposed_action", "/mile/executed_action"), 0)
    try:
        for topic in counts:
            probe.wait_matched(topic, timeout=60)
        probe.record("recorder_node", str(work / "rec_bag"))
        image = Image(height=224, width=224, encoding="rgb8", step=224 * 3)
        pixels = np.random.default_rng(0).integers(0, 255, 224 * 224 * 3, dtype=np.uint8).tobytes()
        image.data = pixels
        period = 1.0 / args.image_rate
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < args.duration:
            stamp = int(k * period * 1e9) + 1
            image.header.stamp = to_time(stamp)
            probe.publish("/camera/image_raw", image)
            probe.publish("/robot/state", vector_msg(stamp, [f"obs_{i:02d}" for i in range(39)], np.zeros(39)))
            probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, np.zeros(4)))
            probe.publish("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, np.zeros(4), "robot"))
            for t in counts:
                counts[t] += 1
            k += 1
            time.sleep(max(0.0, start + k * period - time.monotonic()))
        elapsed = time.monotonic() - start
        probe.stop_recording("recorder_node", str(work / "rec_bag"))
    finally:
        probe.close()
        node.stop()
    bag = read_bag(work / "rec_bag")
    size = sum(f.stat().st_size for f in (work / "rec_bag").iterdir())
    print(f"recorder ({args.image_rate:g} Hz of 224x224 rgb8 + state + actions, {elapsed:.0f} s, {size / 1e6:.0f} MB):")
    total_lost = 0
    for topic, sent in counts.items():
        got = len(bag.topic(topic))
        total_lost += sent - got
        qos = "best effort" if topic in ("/camera/image_raw", "/robot/state") else "reliable"
        print(f"  {topic:<24} published {sent:>6}, recorded {got:>6}, lost {sent - got} ({qos})")
    print(f"  messages lost in all: {total_lost}")


def run(args: argparse.Namespace) -> int:
    """The chosen parts, each in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mile_bench_graph_") as tmp:
        work = Path(tmp)
        if args.part in ("loop", "all"):
            bench_loop(args, work)
        if args.part in ("recorder", "all"):
            bench_recorder(args, work)
    return 0
