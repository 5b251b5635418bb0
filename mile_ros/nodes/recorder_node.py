"""recorder_node: one MCAP rosbag2 per episode, serialized messages straight from DDS to the file.

``/recorder/start`` opens ``bag_path`` (or a new folder under ``output_dir``) with the metadata in
``episode_info`` (JSON; the session manager sets both parameters before calling); ``/recorder/stop``
closes it, adding steps, interventions, success, ``end_reason`` and ``discarded`` (the operator's discard
button: the bag stays on disk, the dataset builder leaves it out), and answers with those as JSON.

The recorder writes only under ``output_dir`` (the run's ``bags/``; read-only after start-up): a
``bag_path`` that resolves anywhere else (``..``, a symlink, an absolute path) is refused, when it is
set and again when a bag is opened, whoever sets it.

It also offers every finished bag to a trainer on another host (``bag_mirror`` there,
:mod:`mile_ros.graph.bag_transfer`): a JSON request on ``/recorder/bag_request`` (``list``, or a
``chunk`` of a file from an offset) is answered on ``/recorder/bag_reply`` with the file's size and
SHA-256. Only finished bags under ``output_dir`` are offered, never the one being recorded.
"""

from __future__ import annotations

import array
import json
import sys
import time
from pathlib import Path

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import String, UInt8MultiArray
from std_srvs.srv import Trigger

from mile_ros.graph.bag_episode import EpisodeBagWriter
from mile_ros.graph.bag_transfer import BagOffer
from mile_ros.graph.episode_stats import EpisodeStats
from mile_ros.graph.topics import CAMERA_TOPIC, END_DISCARD, RECORDED_TOPICS, topic_info
from mile_ros.nodes.common import Param, declare_parameters, monotonic, publisher, stamp_ns, subscription

STEP_TOPICS = (
    "mile/executed_action",
    "mile/observation",
    "mile/proposed_action",
    "mile/human_action",
    "episode/end",
)

PARAMETERS = (
    Param(
        "output_dir",
        "bags",
        "where bags go when bag_path is empty; the recorder writes nowhere else (read-only)",
        read_only=True,
    ),
    Param(
        "bag_path",
        "",
        "folder of the next bag, inside output_dir (must not exist); set before /recorder/start",
    ),
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
        # Resolved once: later changes of the working directory or of links cannot move it.
        self.root = Path(p["output_dir"]).resolve()
        if p["bag_path"]:
            self.confined(p["bag_path"])  # refuse a bad launch parameter at start-up, not mid-session
        self.add_on_set_parameters_callback(self.on_set_parameters)
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
        self.create_service(Trigger, "recorder/start", self.on_start)
        self.create_service(Trigger, "recorder/stop", self.on_stop)
        # Finished bags for a trainer on another host; the one being written is never offered.
        self.offer = BagOffer(self.root, busy=lambda: self.writer.path if self.writer is not None else None)
        self.pub_reply = publisher(self, "recorder/bag_reply")
        subscription(self, "recorder/bag_request", self.on_bag_request)

    def on_bag_request(self, msg: String) -> None:
        try:
            request = json.loads(msg.data)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.get_logger().warning(f"ignored a malformed bag request: {exc}")
            return
        # array('B') is rclpy's own type for uint8[]: assigned without a per-byte check.
        self.pub_reply.publish(UInt8MultiArray(data=array.array("B", self.offer.answer(request))))

    def on_message(self, topic: str, data: bytes) -> None:
        self.received[topic] += 1
        if topic_info(topic).qos == "latched":
            self.latched[topic] = bytes(data)
        if self.writer is None:
            return
        self.writer.write(topic, data, self.get_clock().now().nanoseconds)
        if topic in STEP_TOPICS:
            msg = deserialize_message(data, JointState)
            stamp = stamp_ns(msg)
            if topic == "mile/executed_action":
                self.stats.on_executed(stamp, msg.header.frame_id)
            elif topic == "mile/observation":
                self.stats.observations.add(stamp)
            elif topic == "mile/proposed_action":
                self.stats.proposals.add(stamp)
            elif topic == "mile/human_action":
                self.stats.human_actions.add(stamp)
            else:
                self.stats.on_end(stamp, msg.header.frame_id, dict(zip(msg.name, msg.position)))

    def confined(self, bag_path: str) -> Path:
        """``bag_path`` resolved (symlinks, ``..``); ValueError unless it lies inside ``output_dir``."""
        path = Path(bag_path)
        resolved = (path if path.is_absolute() else Path.cwd() / path).resolve()
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise ValueError(
                f"bag_path {bag_path!r} resolves to {resolved}, outside the recorder's output_dir "
                f"{self.root}: refused (the recorder writes only under its run directory)"
            )
        return resolved

    def on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name == "bag_path" and param.value:
                try:
                    self.confined(str(param.value))
                except ValueError as exc:
                    self.get_logger().error(str(exc))
                    return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def on_start(self, request, response):
        if self.writer is not None:
            response.success, response.message = False, f"already recording {self.writer.path}"
            return response
        try:
            info = json.loads(self.get_parameter("episode_info").value or "{}")
            wanted = self.get_parameter("bag_path").value or str(self.root / time.strftime("episode_%Y%m%d_%H%M%S"))
            path = self.confined(wanted)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Checked again once the folders exist: a link made in between must not lead outside.
            path = self.confined(str(path))
            # Under the names subscribed to (``/arm1/mile/observation`` in namespace arm1), as ros2 bag would.
            names = {self.resolve_topic_name(t): topic_info(t).type for t in self.topics}
            self.writer = EpisodeBagWriter(path, names, self.flush_every)
        except Exception as exc:  # outside output_dir, an existing folder, bad JSON: refuse, write nothing
            response.success, response.message = False, f"cannot start recording: {exc}"
            self.get_logger().error(response.message)
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
        result = {**self.info, **self.stats.as_dict(), "bag": str(self.writer.path), "namespace": self.get_namespace()}
        ended = self.stats.end_stamp is not None
        if not ended:  # stopped without an episode end (a timeout): kept, never trained on
            result["interrupted"] = "the episode was stopped before it ended"
        try:
            self.writer.close(result, complete=ended)
        except Exception as exc:
            response.success, response.message = False, f"could not close {self.writer.path}: {exc}"
            return response
        finally:
            self.writer = None
        result["message_counts"] = {}
        response.success, response.message = True, json.dumps(result)
        return response

    def close(self) -> None:
        if self.writer is not None:  # stopped mid-episode: a readable bag, marked so it is never trained on
            reason = "the recorder was stopped before the episode ended"
            self.writer.close({**self.info, **self.stats.as_dict(), "interrupted": reason}, complete=False)


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(RecorderNode, args)


if __name__ == "__main__":
    sys.exit(main())
