"""The session's topics as Foxglove channels, and the message paths of a Foxglove layout (no rclpy).

The live view (``mile-ros sim --foxglove``, :mod:`mile_ros.nodes.foxglove_bridge`) passes each
message on as the CDR bytes DDS delivered, under its ``ros2msg`` schema: exactly what the recorder
writes to the MCAP bags. So one layout (``config/foxglove_session.json``) reads the same message paths
(``/mile/proposed_action.position[0]``) live and on a recorded bag, and nothing is converted per message.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mile_ros.graph.topics import ACTION_NAMES, CAMERA_TOPIC, RECORDED_TOPICS, bag_topic, topic_info

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LAYOUT",
    "LIVE_TOPICS",
    "ChannelSpec",
    "channel_specs",
    "check_live_view",
    "check_port",
    "foxglove_port",
    "layout_paths",
    "live_view_args",
    "parse_port",
    "path_topic",
    "resolve_path",
    "session_layout",
]

DEFAULT_HOST = "127.0.0.1"  # the live view is for this machine only (it has no authentication)
DEFAULT_PORT = 8765  # Foxglove's own default for a WebSocket connection
LAYOUT = Path(__file__).resolve().parents[2] / "config" / "foxglove_session.json"

# What a person watching a session wants: the learning record, the camera, the session's progress and
# which checkpoint acts. Left out: /clock (one message per step, no information for a viewer) and the
# 2048-d R3M embedding.
# Channels carry root names (``/mile/observation``), as a bag's reader does, so the layout reads any
# namespace's session; the node subscribes to the relative names, in its own namespace.
LIVE_TOPICS: tuple[str, ...] = tuple(
    bag_topic(t) for t in (*RECORDED_TOPICS, CAMERA_TOPIC, "session/progress", "mile/active_checkpoint")
)

SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"


@dataclass(frozen=True)
class ChannelSpec:
    """One Foxglove channel: a ROS topic's CDR messages under its ``ros2msg`` definition."""

    topic: str
    schema_name: str  # e.g. sensor_msgs/msg/JointState, as rosbag2 names it in an MCAP file
    schema: bytes  # the type's definition followed by every type it uses (the MCAP ros2msg layout)
    schema_encoding: str = SCHEMA_ENCODING
    message_encoding: str = MESSAGE_ENCODING


def channel_specs(topics: Iterable[str] = LIVE_TOPICS) -> list[ChannelSpec]:
    """A channel per topic; an unknown topic is a ValueError naming it."""
    from mile_ros.graph.bag_episode import typestore

    store = typestore()
    specs = []
    for name in topics:
        msgtype = topic_info(name).type  # ValueError for a topic it does not know
        text, _ = store.generate_msgdef(msgtype, ros_version=2)
        specs.append(ChannelSpec(name, msgtype, text.encode()))
    return specs


def parse_port(text: str | int) -> int:
    """A TCP port 1-65535 (``--foxglove PORT``); ValueError otherwise."""
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return port


def check_port(port: int, host: str = DEFAULT_HOST) -> None:
    """Raise ValueError when ``host:port`` cannot be listened on (taken, or not allowed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror or exc})"
            raise ValueError(f"{host}:{port} {why}; choose another port with --foxglove PORT") from None


def foxglove_port(text: str) -> int:
    """argparse type of ``--foxglove PORT``."""
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_live_view(port: int, secured: bool = False, host: str = DEFAULT_HOST) -> None:
    """Refuse (ValueError) a live view that cannot start, before the session writes anything."""
    if secured:
        # The bridge would be one more participant, outside the keystore's enclaves and permissions.
        raise ValueError("not with --secure: the live view is a node outside the keystore's enclaves")
    try:
        import foxglove  # noqa: F401
    except ImportError:
        raise ValueError("the live view needs the foxglove-sdk package: pip install -e '.[foxglove]'") from None
    check_port(port, host)


def live_view_args(port: int, host: str = DEFAULT_HOST) -> list[str]:
    """The ``--ros-args`` that start :mod:`mile_ros.nodes.foxglove_bridge` on ``host:port``."""
    return ["-p", f"host:={host}", "-p", f"port:={port}"]


# A message path as Foxglove writes one: a topic, then .field and [index] steps (filters {...} and
# slices are not used by this project's layout).
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]")


def path_topic(path: str) -> str:
    """The topic of a message path: everything before its first ``.``, ``[`` or ``{``."""
    end = min((i for i in (path.find("."), path.find("["), path.find("{")) if i >= 0), default=len(path))
    return path[:end]


def _steps(path: str) -> list[str | int]:
    rest = path[len(path_topic(path)) :]
    steps: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if m is None:
            raise ValueError(f"message path {path!r}: cannot read {rest[pos:]!r}")
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return steps


def resolve_path(path: str, message: Any) -> Any:
    """The value a message path selects in a decoded message (fields by name, arrays by index)."""
    value = message
    for step in _steps(path):
        value = value[step] if isinstance(step, int) else getattr(value, step)
    return value


def load_layout(path: Path = LAYOUT) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _panels(content: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels of a layout's content tree (splits, tabs and stacks hold ``items``)."""
    if content.get("type") == "panel":
        yield content
        return
    for item in content.get("items", []) + content.get("tabs", []):
        yield from _panels(item["content"])


def layout_paths(layout: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every (panel title, message path or topic) that a Foxglove layout reads."""
    for panel in _panels(layout["content"]):
        config, title = panel.get("config", {}), panel.get("title") or panel["panelType"]
        for series in config.get("paths", []):
            yield title, series["value"]
        for key in ("path", "topicPath"):
            if config.get(key):
                yield title, config[key]
        topic = config.get("imageMode", {}).get("imageTopic")
        if topic:
            yield title, topic


def session_layout() -> str:
    """The session's Foxglove layout as JSON, built with the SDK's own layout types (foxglove.layouts).

    Every series is timed by receive time: a live connection's arrival, a bag's log time, the same
    order in both (the header stamps are simulated time, which jumps back at each episode's start).
    """
    import foxglove.layouts as fl

    def series(value: str, label: str) -> fl.PlotSeries:
        return fl.PlotSeries(value=value, label=label, enabled=True, timestamp_method="receiveTime")

    def state(value: str, label: str) -> fl.StateTransitionsSeries:
        return fl.StateTransitionsSeries(value=value, label=label, enabled=True, timestamp_method="receiveTime")

    def plot(title: str, paths: list, lo: float, hi: float) -> fl.PlotPanel:
        config = fl.PlotConfig(
            paths=paths,
            min_y_value=lo,
            max_y_value=hi,
            show_legend=True,
            legend_display="floating",
            show_plot_values_in_legend=True,
            is_synced=True,
            x_axis_val="timestamp",
            following_view_width=30,
        )
        return fl.PlotPanel(title=title, config=config)

    def split(direction: str, *items: tuple[float, Any]) -> fl.SplitContainer:
        return fl.SplitContainer(direction=direction, items=[fl.SplitItem(proportion=p, content=c) for p, c in items])

    proposed, executed, human = "/mile/proposed_action", "/mile/executed_action", "/mile/human_action"
    xyz = [
        s
        for i, name in enumerate(ACTION_NAMES[:3])
        for s in (
            series(f"{proposed}.position[{i}]", f"proposed {name}"),
            series(f"{executed}.position[{i}]", f"executed {name}"),
        )
    ]
    grip = len(ACTION_NAMES) - 1
    gripper = [
        series(f"{proposed}.position[{grip}]", "proposed gripper"),
        series(f"{executed}.position[{grip}]", "executed gripper"),
        series(f"{human}.position[{grip}]", "human gripper"),
    ]
    takeover = [
        series("/mile/intervention_probability.position[0]", "predicted p_intervene"),
        series("/mile/intervention.data", "intervention flag (1: the human drives)"),
    ]
    # /episode/end is a stamped vector: steps success return duration_s; frame_id the reason.
    states = [
        state(f"{executed}.header.frame_id", "command source"),
        state("/mile/intervention.data", "intervention"),
        state("/robot/success.data", "task success"),
        state("/episode/end.header.frame_id", "episode end: reason"),
        state("/episode/end.position[1]", "episode end: success"),
    ]
    indicator = fl.IndicatorPanel(
        title="Who drives",
        config=fl.IndicatorConfig(
            path="/mile/intervention.data",
            style="background",
            rules=[fl.IndicatorRule(operator="=", raw_value="true", color="#d1342f", label="HUMAN (takeover)")],
            fallback_color="#2e8b57",
            fallback_label="robot (policy)",
        ),
    )
    left = split(
        "column",
        (
            5,
            fl.ImagePanel(
                title="Camera",
                config=fl.ImageConfig(image_mode=fl.ImageModeConfig(image_topic=bag_topic(CAMERA_TOPIC))),
            ),
        ),
        (1, indicator),
        (
            3,
            split(
                "row",
                (
                    1,
                    fl.RawMessagesPanel(
                        title="Episode end", config=fl.RawMessagesConfig(topic_path="/episode/end", expansion="all")
                    ),
                ),
                (
                    1,
                    fl.RawMessagesPanel(
                        title="Session progress", config=fl.RawMessagesConfig(topic_path="/session/progress.data")
                    ),
                ),
            ),
        ),
    )
    right = split(
        "column",
        (3, plot("Executed vs proposed action (dx, dy, dz)", xyz, -1, 1)),
        (2, plot("Gripper: proposed, executed, the human's", gripper, -1, 1)),
        (3, plot("Predicted P(I=1|s) and the intervention flag", takeover, 0, 1)),
        (
            3,
            fl.StateTransitionsPanel(
                title="Source, takeover, success, episode ends",
                config=fl.StateTransitionsConfig(paths=states, is_synced=True),
            ),
        ),
    )
    layout = fl.Layout(content=split("row", (2, left), (3, right)))
    return json.dumps(json.loads(layout.to_json()), indent=1) + "\n"


if __name__ == "__main__":  # python -m mile_ros.graph.foxglove_bridge: rewrite config/foxglove_session.json
    LAYOUT.write_text(session_layout())
    print(f"wrote {LAYOUT}")
