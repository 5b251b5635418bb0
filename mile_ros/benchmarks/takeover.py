"""``mile-ros bench takeover``: gamepad event -> Joy published -> human command out of arbitration.

Drives the real teleop node through an SDL virtual joystick in its own process
(:mod:`mile_ros.testing.virtual_pad`) and times, over DDS with the tests' probe node on a free domain,
the pad event until the Joy arrives and (with arbitration) until the human command leaves arbitration.
Prints measured figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from mile_ros.graph.topics import SOURCE_HUMAN

from .common import percentile

CONTROL_HZ = 20.0  # the rate of the proposals the bench publishes to arbitration (control_rate_hz in config/sim.yaml)
JOY, PROPOSED, EXECUTED = "/teleop/joy", "/mile/proposed_action", "/mile/executed_action"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presses", type=int, default=40, help="takeover presses and releases (default 40)")
    parser.add_argument("--no-arbitration", action="store_true", help="time only the pad event -> Joy arrival")


def run(args: argparse.Namespace) -> int:
    """Press and release the takeover button ``--presses`` times and time each change's way out."""
    import multiprocessing
    import os

    from mile_ros.graph.joy_mapping import load_joy_mapping
    from mile_ros.graph.topics import ACTION_NAMES
    from mile_ros.nodes.common import vector_msg
    from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id
    from mile_ros.testing.virtual_pad import run_with_virtual_pad

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the teleop process inherits it
    domain_id = unique_domain_id()
    mapping = load_joy_mapping("sdl")
    takeover = mapping.buttons["takeover"]
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mile_bench_takeover_")))
        teleop = ctx.Process(target=run_with_virtual_pad, args=(child, ["-p", "joy_mapping:=sdl"], domain_id, True))
        teleop.start()
        stack.callback(_stop_teleop, parent, teleop)
        arbitration = None
        if not args.no_arbitration:
            arbitration = NodeProcess("arbitration_node", domain_id, {"joy_mapping": "sdl"}, logs)
            stack.callback(arbitration.stop, 20.0)
        probe = Probe(domain_id, "takeover_bench")
        stack.callback(probe.close)
        for topic in (JOY, EXECUTED):
            probe.listen(topic)
        probe.node.create_timer(
            1.0 / CONTROL_HZ,
            lambda: probe.publish(
                PROPOSED, vector_msg(probe.node.get_clock().now().nanoseconds, ACTION_NAMES, [0.0, 0.0, 0.0, 0.0])
            ),
        )
        return _measure(args, probe, parent, takeover, arbitration is not None)


def _measure(args: argparse.Namespace, probe, pad, takeover: int, arbitration: bool) -> int:
    def command(*cmd) -> float:
        pad.send(cmd)
        if not pad.poll(30):
            raise RuntimeError(f"the teleop process did not answer {cmd}")
        return pad.recv()

    def first(topic: str, since: int, match) -> float | None:  # the arrival time of the first match
        return next((t for t, msg in probe.received[topic][since:] if match(msg)), None)

    def wait(topic: str, since: int, match, what: str) -> float | None:
        try:
            probe.wait_for(lambda: first(topic, since, match) is not None, 30.0, what)
        except TimeoutError:
            return None
        with probe.cond:
            return first(topic, since, match)

    def pressed_in(msg) -> int:
        return int(msg.buttons[takeover]) if len(msg.buttons) > takeover else 0

    joy_delays: list[float] = []
    human_delays: list[float] = []
    if wait(JOY, 0, lambda m: True, "a Joy") is None:
        print("no Joy from the teleop process within 30 s")
        return 1
    if arbitration and wait(EXECUTED, 0, lambda m: True, "a command") is None:
        print("no command from arbitration within 30 s")
        return 1
    for i in range(args.presses):
        pressed = i % 2 == 0
        with probe.cond:
            n_joy, n_exec = len(probe.received[JOY]), len(probe.received[EXECUTED])
        t0 = command("button", takeover, int(pressed))
        arrival = wait(JOY, n_joy, lambda m, p=pressed: pressed_in(m) == p, "the Joy")
        if arrival is None:
            print(f"press {i}: the Joy never arrived")
            return 1
        joy_delays.append(arrival - t0)
        if arbitration and pressed:
            out = wait(EXECUTED, n_exec, lambda m: m.header.frame_id == SOURCE_HUMAN, "a human command")
            if out is None:
                print(f"press {i}: arbitration never sent a human command")
                return 1
            human_delays.append(out - t0)
        time.sleep(0.03 + 0.011 * (i % 5))  # spread presses over the control period's phase
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


def _stop_teleop(pad, teleop) -> None:
    with contextlib.suppress(RuntimeError, OSError):
        pad.send(("stop",))
        if pad.poll(30):
            pad.recv()
    teleop.join(timeout=20)
