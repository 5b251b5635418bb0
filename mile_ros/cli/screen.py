"""``mile-ros screen``: the operator's terminal view of a running session, from the session's own topics.

Shows the episode (iteration, index, step, elapsed), who drives (the takeover), what the pad's
success/failure/discard/takeover buttons do (lit while pressed), the policy's current predicted
``P(I=1|s)`` with its recent history, the learning curve (success per iteration) and the trainer's
progress. Start it beside ``ros2 launch mile_ros widowx.launch.py`` or ``mile-ros sim`` with the same
``ROS_DOMAIN_ID`` (``--domain-id``); Ctrl-C leaves it, the session goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from mile_ros.cli.sim import domain_id

    p = sub.add_parser("screen", help="the operator's terminal view of a running session", description=__doc__)
    p.add_argument("--domain-id", type=domain_id, help="ROS_DOMAIN_ID of the session (default: $ROS_DOMAIN_ID, else 0)")
    p.add_argument(
        "--run-dir", type=Path, help="the session's run directory: the learning curve so far from its metrics.json"
    )
    p.add_argument("--joy-mapping", default="ps3", help="the pad's mapping: ps3, sdl or a YAML path (default ps3)")
    p.add_argument("--refresh-hz", type=float, default=4.0, help="redraws per second (default 4)")
    p.add_argument("--exit-when-done", action="store_true", help="leave a few seconds after the session completes")
    p.set_defaults(func=run)


def load_history(state, run_dir: Path) -> None:
    """The episodes recorded before the screen started (metrics.json, written after every episode)."""
    try:
        data = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return
    for record in data.get("episodes", []):
        state.add_episode(record)


class ScreenNode:
    """Subscriptions that feed a :class:`ScreenState` (under ``lock``) from a private rclpy context."""

    def __init__(self, state, lock: threading.Lock, domain: int | None, run_dir: Path | None = None) -> None:
        import rclpy
        from rcl_interfaces.msg import ParameterEvent
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_parameter_events

        from mile_ros.nodes.common import stamp_ns, subscription

        self.state, self.lock, self.run_dir = state, lock, run_dir
        self.context = Context()
        kwargs = {} if domain is None else {"domain_id": domain}
        rclpy.init(context=self.context, **kwargs)
        self.node = rclpy.create_node("operator_screen", context=self.context)

        def feed(method, convert):
            def callback(msg) -> None:
                with self.lock:
                    getattr(self.state, method)(*convert(msg))

            return callback

        subscription(
            self.node, "/mile/executed_action", feed("on_executed", lambda m: (stamp_ns(m), m.header.frame_id))
        )
        subscription(self.node, "/mile/intervention", feed("on_intervention", lambda m: (m.data,)))
        subscription(
            self.node,
            "/mile/intervention_probability",
            feed("on_probability", lambda m: (m.position[0],) if len(m.position) else (float("nan"),)),
        )
        subscription(self.node, "/teleop/joy", feed("on_joy", lambda m: (list(m.buttons),)))
        subscription(
            self.node,
            "/episode/end",
            feed("on_episode_end", lambda m: (m.header.frame_id, dict(zip(m.name, m.position)))),
        )
        # A deep queue: the session manager publishes an episode's result and "training" back to back,
        # and a latched topic's one-message queue would keep only the second.
        subscription(self.node, "/session/progress", self.on_progress, depth=100)
        subscription(self.node, "/mile/active_checkpoint", feed("on_active_checkpoint", lambda m: (m.data,)))
        # The session manager sets the recorder's episode_info before each episode: the episode starts.
        self.node.create_subscription(
            ParameterEvent, "/parameter_events", self.on_parameter_event, qos_profile_parameter_events
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # the context shut down while spinning
            self.executor.spin()

    def on_progress(self, msg) -> None:
        with self.lock:
            self.state.on_progress(_json(msg.data))
            if self.run_dir is not None:  # episodes this screen did not see (it started late)
                load_history(self.state, self.run_dir)

    def on_parameter_event(self, event) -> None:
        if event.node.rstrip("/").rsplit("/", 1)[-1] != "recorder_node":
            return
        for param in list(event.new_parameters) + list(event.changed_parameters):
            if param.name == "episode_info":
                info = _json(param.value.string_value)
                if info:
                    with self.lock:
                        self.state.on_episode_info(info)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)


def _json(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        return {"text": text}
    return data if isinstance(data, dict) else {"text": text}


def run(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        print("mile-ros screen: error: needs the rich package (pip install rich)", file=sys.stderr)
        return 2
    from mile_ros.graph.joy_mapping import JoyMappingError, load_joy_mapping
    from mile_ros.operator.state import ScreenState
    from mile_ros.operator.view import render

    if args.refresh_hz <= 0:
        print("mile-ros screen: error: --refresh-hz must be positive", file=sys.stderr)
        return 2
    try:
        mapping = load_joy_mapping(args.joy_mapping)
    except (JoyMappingError, OSError) as exc:
        print(f"mile-ros screen: error: {exc}", file=sys.stderr)
        return 2
    # Same host as the session by default (mile-ros sim keeps its graph on loopback); set the range
    # (e.g. SUBNET) to watch a session on another machine.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    state = ScreenState()
    lock = threading.Lock()
    if args.run_dir is not None:
        load_history(state, args.run_dir)
    node = ScreenNode(state, lock, domain, args.run_dir)
    header = f"mile_ros operator screen · ROS_DOMAIN_ID={domain}"
    pad = mapping.name

    def frame():
        with lock:
            return render(state, dict(mapping.buttons), pad, header)

    done_at = None
    try:
        with Live(get_renderable=frame, console=Console(), refresh_per_second=args.refresh_hz, screen=True):
            while True:
                time.sleep(0.1)
                if args.exit_when_done and state.done:
                    done_at = done_at or time.monotonic()
                    if time.monotonic() - done_at > 3.0:
                        break
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
    return 0
