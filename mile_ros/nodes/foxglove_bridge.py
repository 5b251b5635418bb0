"""foxglove_bridge: the session's topics live in Foxglove, without a ROS 2 distribution.

A Foxglove WebSocket server (the ``foxglove-sdk`` package) with one channel per topic of
:data:`mile_ros.graph.foxglove_bridge.LIVE_TOPICS`. Each message goes on as the CDR bytes DDS
delivered, under its ``ros2msg`` schema, as in the recorded bags, so ``config/foxglove_session.json``
reads the live view and the bags alike. ``mile-ros sim --foxglove [PORT]`` starts it beside the graph;
it is not part of the graph (no node waits for it) and listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from mile_ros.graph.foxglove_bridge import DEFAULT_HOST, DEFAULT_PORT, channel_specs
from mile_ros.nodes.common import Param, declare_parameters, subscription

PARAMETERS = (
    Param("host", DEFAULT_HOST, "address the WebSocket server listens on (127.0.0.1: this machine only)"),
    Param("port", DEFAULT_PORT, "TCP port of the WebSocket server", (1, 65535)),
    Param("queue_depth", 100, "history depth of the reliable subscriptions (a slow moment loses nothing)", (1, 100000)),
)


class FoxgloveBridge(Node):
    def __init__(self) -> None:
        super().__init__("foxglove_bridge")
        p = declare_parameters(self, PARAMETERS, strict=True)  # read at start: read-only
        import foxglove

        # A context of its own: nothing else in the process logs to this server by accident.
        self.fox = foxglove.Context()
        self.server = foxglove.start_server(name="mile_ros", host=p["host"], port=p["port"], context=self.fox)
        self.channels = {}
        for spec in channel_specs():
            schema = foxglove.Schema(name=spec.schema_name, encoding=spec.schema_encoding, data=spec.schema)
            channel = foxglove.Channel(
                spec.topic, schema=schema, message_encoding=spec.message_encoding, context=self.fox
            )
            self.channels[spec.topic] = channel
            subscription(self, spec.topic.lstrip("/"), channel.log, raw=True, depth=int(p["queue_depth"]))
        # The launcher's log and the tests read this line.
        print(f"Foxglove live view on ws://{p['host']}:{self.server.port} ({len(self.channels)} topics)", flush=True)

    def close(self) -> None:
        self.server.stop()


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(FoxgloveBridge, args)


if __name__ == "__main__":
    sys.exit(main())
