"""recorder_node: one MCAP rosbag2 per episode, serialized messages straight from DDS to the file.

``/recorder/start`` opens ``bag_path`` (or a new folder under ``output_dir``) with the metadata in
``episode_info`` (JSON; the session manager sets both parameters before calling); ``/recorder/stop``
closes it, adding steps, interventions, success, ``end_reason`` and ``discarded`` (the operator's discard
button: the bag stays on disk, the dataset builder leaves it out), and answers with those as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from mile_ros.graph.bag_episode import EpisodeBagWriter
from mile_ros.graph.episode_stats import EpisodeStats
from mile_ros.graph.topics import CAMERA_TOPIC, END_DISCARD, RECORDED_TOPICS, TOPICS
from mile_ros.nodes.common import Param, declare_parameters, monotonic, stamp_ns, subscription

STEP_TOPICS = (
    "/mile/executed_action",
    "/mile/observation",
    "/mile/proposed_action",
    "/mile/human_action",
    "/sim/episode_end",
)

PARAMETERS = (
    Param("output_dir", "bags", "where bags go when bag_path is empty"),
    Param("bag_path", "", "folder of the next bag (must not exist); set before /recorder/start"),
    Param("episode_info", "{}", "JSON metadata of the next episode (iteration, episode, mode, checkpoint, ...)"),
    Param("record_camera", False, "also record /camera/image_raw"),
    Param(
        "drain_s",
        10.0,
        "on stop, keep recording up to this long until every step of the ended episode has arrived",
        (0.0, 60.0),
    ),
    Param(
        "queue_depth",
        1000,
        "per-topic receive queue: room to catch up without dropping messages",
        (1, 100000),
    ),
    Param(
        "flush_every",
        1,
        "write buffered messages to the file after this many (1: a kill loses none)",
        (1, 100000),
    ),
)


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder_node")
        p = declare_parameters(self, PARAMETERS)
        self.topics = list(RECORDED_TOPICS) + ([CAMERA_TOPIC] if p["record_camera"] else [])
        self.flush_every = int(p["flush_every"])
        self.writer: EpisodeBagWriter | None = None
        self.drain_s = float(p["drain_s"])
        self.stop_requested: float | None = None
        self.info: dict = {}
        self.stats = EpisodeStats()
        self.received = dict.fromkeys(self.topics, 0)
        # Latched topics (the gamepad's status) change rarely: the latest one opens every bag, so a
        # bag says whether the pad was there even if it never changed during the episode.
        self.latched: dict[str, bytes] = {}
        for topic in self.topics:
            subscription(
                self,
                topic,
                lambda data, t=topic: self.on_message(t, data),
                raw=True,
                depth=int(p["queue_depth"]),
            )
        self.create_service(Trigger, "/recorder/start", self.on_start)
        self.create_service(Trigger, "/recorder/stop", self.on_stop)

    def on_message(self, topic: str, data: bytes) -> None:
        self.received[topic] += 1
        if TOPICS[topic].qos == "latched":
            self.latched[topic] = bytes(data)
        if self.writer is None:
            return
        self.writer.write(topic, data, self.get_clock().now().nanoseconds)
        if topic in STEP_TOPICS:
            msg = deserialize_message(data, JointState)
            stamp = stamp_ns(msg)
            if topic == "/mile/executed_action":
                self.stats.on_executed(stamp, msg.header.frame_id)
            elif topic == "/mile/observation":
                self.stats.observations.add(stamp)
            elif topic == "/mile/proposed_action":
                self.stats.proposals.add(stamp)
            elif topic == "/mile/human_action":
                self.stats.human_actions.add(stamp)
            else:
                self.stats.on_end(stamp, msg.header.frame_id, dict(zip(msg.name, msg.position)))

    def on_start(self, request, response):
        if self.writer is not None:
            response.success, response.message = False, f"already recording {self.writer.path}"
            return response
        try:
            info = json.loads(self.get_parameter("episode_info").value or "{}")
            path = self.get_parameter("bag_path").value or str(
                Path(self.get_parameter("output_dir").value) / time.strftime("episode_%Y%m%d_%H%M%S")
            )
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.writer = EpisodeBagWriter(path, {t: TOPICS[t].type for t in self.topics}, self.flush_every)
        except Exception as exc:  # an existing folder, bad JSON: refuse, overwrite nothing
            response.success, response.message = False, f"cannot start recording: {exc}"
            return response
        self.info, self.stats, self.stop_requested = info, EpisodeStats(), None
        now = self.get_clock().now().nanoseconds
        for topic, data in self.latched.items():
            self.writer.write(topic, data, now)
        response.success, response.message = True, str(path)
        return response

    def on_stop(self, request, response):
        if self.writer is None:
            response.success, response.message = False, "not recording"
            return response
        # The episode's last messages may still be queued behind this request: answer "draining"
        # (the caller asks again) until the bridge's episode end is in the bag, or drain_s passed.
        now = monotonic()
        self.stop_requested = self.stop_requested or now
        if not self.stats.complete() and now - self.stop_requested < self.drain_s:
            response.success, response.message = False, "draining: waiting for the episode's last messages"
            return response
        if self.stats.end_reason == END_DISCARD:
            self.get_logger().info(f"{self.writer.path}: discarded by the operator (kept, left out of training)")
        if not self.stats.complete():
            self.get_logger().warn(f"closing {self.writer.path} before every step arrived: {self.stats.as_dict()}")
        result = {**self.info, **self.stats.as_dict(), "bag": str(self.writer.path)}
        try:
            self.writer.close(result)
        except Exception as exc:
            response.success, response.message = False, f"could not close {self.writer.path}: {exc}"
            return response
        finally:
            self.writer = None
        result["message_counts"] = {}
        response.success, response.message = True, json.dumps(result)
        return response

    def close(self) -> None:
        if self.writer is not None:  # Ctrl-C mid-episode: finish the bag so it is complete
            self.writer.close({**self.info, **self.stats.as_dict(), "interrupted": True})


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(RecorderNode, args)


if __name__ == "__main__":
    sys.exit(main())
