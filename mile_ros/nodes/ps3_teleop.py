"""ps3_teleop: a gamepad read through pygame (SDL), published as ``sensor_msgs/Joy`` like the ``joy`` node.

Logic: :mod:`mile_ros.robot.gamepad`. Publishes on every change (checked ``poll_rate_hz`` times a second)
and at least ``autorepeat_rate_hz``. With no pad, or when it is unplugged, it publishes an all-released
Joy (takeover released, so arbitration hands back to the policy or holds) and a status on
``/teleop/status`` (``std_msgs/String`` JSON: state connected/disconnected/missing, name, message), which
the recorder keeps next to the episode; it reconnects when the pad returns.
"""

from __future__ import annotations

import json
import sys

from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import String

from mile_ros.graph.joy_mapping import JoyMapping, load_joy_mapping
from mile_ros.nodes.common import Param, declare_parameters, qos
from mile_ros.robot.gamepad import Gamepad, PadEvent, PadState

STATUS_TOPIC = "teleop/status"

PARAMETERS = (
    Param("device_index", 0, "which pad among those present (after the name filter)", (0, 16)),
    Param("device_name", "", "use only pads whose name contains this (case-insensitive); empty: any"),
    Param(
        "joy_mapping",
        "ps3",
        "gamepad mapping (config/joy_<name>.yaml or a path): names the takeover "
        "button in the log and sizes the released Joy before a pad is seen",
    ),
    Param(
        "deadzone",
        0.0,
        "joy-node style dead zone applied here; 0 leaves it to the mapping in arbitration",
        (0.0, 0.99),
    ),
    Param("poll_rate_hz", 100.0, "how often the pad is read; a change is published at once", (1.0, 1000.0)),
    Param(
        "autorepeat_rate_hz",
        20.0,
        "publish at least this often even without change (0: only changes)",
        (0.0, 1000.0),
    ),
    Param("joy_topic", "teleop/joy", "where the Joy messages go"),
)


class TeleopNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__("ps3_teleop", **node_options)
        p = declare_parameters(self, PARAMETERS, strict=True)  # read at start: read-only
        self.mapping: JoyMapping = load_joy_mapping(p["joy_mapping"])
        self.pad = Gamepad(
            p["device_index"],
            p["device_name"],
            p["deadzone"],
            self.mapping.axes_count,
            self.mapping.buttons_count,
        )
        self.autorepeat = 1.0 / p["autorepeat_rate_hz"] if p["autorepeat_rate_hz"] > 0 else None
        self.pub_joy = self.create_publisher(Joy, p["joy_topic"], qos("reliable"))
        self.pub_status = self.create_publisher(String, STATUS_TOPIC, qos("latched"))
        self.last: PadState | None = None
        self.last_publish = -1e9
        self.published = 0
        self.create_timer(1.0 / p["poll_rate_hz"], self.on_poll)

    def on_poll(self) -> None:
        state, events = self.pad.poll()
        for event in events:
            self.report(event)
        changed = self.last is None or (state.axes, state.buttons) != (self.last.axes, self.last.buttons)
        due = self.autorepeat is not None and state.read_time - self.last_publish >= self.autorepeat
        if changed or due or events:
            self.publish(state)
        if changed and self.last is not None and state.connected:
            self.log_takeover(self.last, state)
        self.last = state

    def publish(self, state: PadState) -> None:
        msg = Joy()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "joy"
        msg.axes = [float(a) for a in state.axes]
        msg.buttons = [int(b) for b in state.buttons]
        self.pub_joy.publish(msg)
        self.last_publish = state.read_time
        self.published += 1

    def report(self, event: PadEvent) -> None:
        if event.kind == "connected":  # rclpy wants one severity per call site
            self.get_logger().info(event.message)
            self.check_sizes()
        else:
            self.get_logger().error(event.message)
        self.pub_status.publish(
            String(data=json.dumps({"state": event.kind, "name": event.name, "message": event.message}))
        )

    def check_sizes(self) -> None:
        state = self.pad.read()
        needed_axes = max(a.axis for a in self.mapping.actions) + 1
        needed_buttons = max(self.mapping.buttons.values()) + 1
        if len(state.axes) < needed_axes or len(state.buttons) < needed_buttons:
            self.get_logger().error(
                f"pad '{state.name}' has {len(state.axes)} axes and {len(state.buttons)} buttons; mapping "
                f"'{self.mapping.name}' needs {needed_axes} and {needed_buttons}: choose another joy_mapping"
            )

    def log_takeover(self, before: PadState, now: PadState) -> None:
        index = self.mapping.buttons["takeover"]
        if index < min(len(before.buttons), len(now.buttons)) and before.buttons[index] != now.buttons[index]:
            self.get_logger().info("takeover " + ("pressed" if now.buttons[index] else "released"))

    def close(self) -> None:
        self.pad.close()


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(TeleopNode, args)


if __name__ == "__main__":
    sys.exit(main())
