"""``mile-ros bench takeover``: gamepad event -> Joy published -> human command out of arbitration.

Drives the real teleop node through an SDL virtual joystick in its own process and times, over DDS,
the pad event until the Joy arrives and (with arbitration) until the human command leaves arbitration.
Prints measured figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from .common import percentile

CONTROL_HZ = 20.0  # the rate of the proposals the bench publishes to arbitration (control_rate_hz in config/sim.yaml)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presses", type=int, default=40, help="takeover presses and releases (default 40)")
    parser.add_argument("--no-arbitration", action="store_true", help="time only the pad event -> Joy arrival")


def run(args: argparse.Namespace) -> int:
    """Press and release the takeover button ``--presses`` times and time each change's way out."""
    import multiprocessing
    import os
    import subprocess
    import sys
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState, Joy

    from mile_ros.graph.joy_mapping import load_joy_mapping
    from mile_ros.graph.topics import ACTION_NAMES
    from mile_ros.nodes.common import qos, vector_msg
    from mile_ros.testing.virtual_pad import run_with_virtual_pad

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    domain_id = os.getpid() % 100 + 120
    mapping = load_joy_mapping("sdl")
    takeover = mapping.buttons["takeover"]
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    teleop = ctx.Process(target=run_with_virtual_pad, args=(child, ["-p", "joy_mapping:=sdl"], domain_id, True))
    teleop.start()
    arbitration = None
    if not args.no_arbitration:
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id)}
        arbitration = subprocess.Popen(
            [sys.executable, "-m", "mile_ros.nodes.arbitration_node", "--ros-args", "-p", "joy_mapping:=sdl"],
            env=env,
        )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("takeover_bench", context=context)
    lock = threading.Lock()
    joys: list[tuple[float, int]] = []
    executed: list[tuple[float, str]] = []

    def on_joy(msg) -> None:
        with lock:
            joys.append((time.monotonic(), int(msg.buttons[takeover]) if len(msg.buttons) > takeover else 0))

    def on_exec(msg) -> None:
        with lock:
            executed.append((time.monotonic(), msg.header.frame_id))

    node.create_subscription(Joy, "/teleop/joy", on_joy, qos("reliable"))
    node.create_subscription(JointState, "/mile/executed_action", on_exec, qos("reliable"))
    proposals = node.create_publisher(JointState, "/mile/proposed_action", qos("reliable"))
    node.create_timer(
        1.0 / CONTROL_HZ,
        lambda: proposals.publish(vector_msg(node.get_clock().now().nanoseconds, ACTION_NAMES, [0.0, 0.0, 0.0, 0.0])),
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=lambda: _spin(executor, context), daemon=True)
    spinner.start()

    def command(*cmd) -> float:
        parent.send(cmd)
        if not parent.poll(30):
            raise RuntimeError(f"the teleop process did not answer {cmd}")
        return parent.recv()

    def wait(predicate, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                found = predicate()
            if found is not None:
                return found
            time.sleep(0.001)
        return None

    joy_delays: list[float] = []
    human_delays: list[float] = []
    try:
        if wait(lambda: joys[-1] if joys else None) is None:
            print("no Joy from the teleop process within 30 s")
            return 1
        if arbitration is not None and wait(lambda: executed[-1] if executed else None) is None:
            print("no command from arbitration within 30 s")
            return 1
        for i in range(args.presses):
            pressed = i % 2 == 0
            with lock:
                n_joy, n_exec = len(joys), len(executed)
            t0 = command("button", takeover, int(pressed))
            arrival = wait(lambda n=n_joy, p=pressed: next((t for t, b in joys[n:] if b == p), None))
            if arrival is None:
                print(f"press {i}: the Joy never arrived")
                return 1
            joy_delays.append(arrival - t0)
            if arbitration is not None and pressed:
                out = wait(lambda n=n_exec: next((t for t, src in executed[n:] if src == "human"), None))
                if out is None:
                    print(f"press {i}: arbitration never sent a human command")
                    return 1
                human_delays.append(out - t0)
            time.sleep(0.03 + 0.011 * (i % 5))  # spread presses over the control period's phase
    finally:
        with contextlib.suppress(RuntimeError, OSError):
            command("stop")
        teleop.join(timeout=20)
        if arbitration is not None:
            arbitration.terminate()
            arbitration.wait(timeout=20)
        node.destroy_node()
        context.try_shutdown()
    period_ms = 1e3 / CONTROL_HZ
    print(
        f"takeover: pad event -> Joy received over DDS ({len(joy_delays)} changes): median "
        f"{statistics.median(joy_delays) * 1e3:.1f} ms, p90 {percentile(joy_delays, 90) * 1e3:.1f} ms, "
        f"max {max(joy_delays) * 1e3:.1f} ms (one {CONTROL_HZ:g} Hz period: {period_ms:.0f} ms)"
    )
    if human_delays:
        print(
            f"takeover: pad press -> human command out of arbitration, proposals at "
            f"{CONTROL_HZ:g} Hz ({len(human_delays)} presses): "
            f"median {statistics.median(human_delays) * 1e3:.1f} ms, "
            f"p90 {percentile(human_delays, 90) * 1e3:.1f} ms, max {max(human_delays) * 1e3:.1f} ms; "
            f"under one period: {sum(d < period_ms / 1e3 for d in human_delays)}/{len(human_delays)}"
        )
    return 0


def _spin(executor, context) -> None:
    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # the context is shutting down
            return
