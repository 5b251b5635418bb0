"""recorder_node: one MCAP rosbag2 per episode, serialized messages straight from DDS to the file.

A lifecycle node (``rclpy.lifecycle``; ``ros2 lifecycle set /recorder_node configure``); one episode is
one pass through its transitions, driven by the session manager:

- ``configure`` names the bag: it reads ``bag_path`` (or a new folder under ``output_dir``) and
  ``episode_info`` (JSON) and refuses a path outside ``output_dir`` or one that exists. While the
  recorder is configured (inactive or active) both parameters are refused, so the bag that recording
  opens is the one configured: nobody can move it between naming and recording.
- ``activate`` opens that bag and records; ``deactivate`` waits, up to ``drain_s``, until every step
  of the ended episode has arrived (observation, proposal, command, human action), then closes it,
  adding steps, interventions, success, ``end_reason`` and ``discarded`` (the operator's discard
  button: the bag stays on disk, the dataset builder leaves it out) to its metadata and its
  ``episode.json``, which is the episode's summary for the caller.
- ``cleanup`` forgets the path: the parameters may be set for the next episode.

The recorder writes only under ``output_dir`` (the run's ``bags/``; read-only): a ``bag_path`` that
resolves anywhere else (``..``, a symlink, an absolute path) is refused, when it is set, at ``configure``
and again when the bag is opened.

It also offers every finished bag to a trainer on another host (``bag_mirror`` there,
:mod:`mile_ros.graph.bag_transfer`), in every state: a JSON request on ``recorder/bag_request``
(``list``, or a ``chunk`` of a file from an offset) is answered on ``recorder/bag_reply`` with the
file's size and SHA-256. Only finished bags under ``output_dir`` are offered, never the one being
recorded.
"""

from __future__ import annotations

import array
import json
import sys
import threading
import time
from pathlib import Path

from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import String, UInt8MultiArray

from mile_ros.graph.bag_episode import EpisodeBagWriter
from mile_ros.graph.bag_transfer import BagOffer
from mile_ros.graph.episode_stats import EpisodeStats
from mile_ros.graph.topics import CAMERA_TOPIC, END_DISCARD, RECORDED_TOPICS, topic_info
from mile_ros.nodes.common import (
    Param,
    declare_parameters,
    monotonic,
    publisher,
    qos,
    stamp_ns,
    subscription,
)
from mile_ros.nodes.msgtypes import msg_class

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
        "folder of the next bag, inside output_dir (must not exist); read at configure, refused while configured",
        live=True,
    ),
    Param(
        "episode_info",
        "{}",
        "JSON metadata of the next episode (iteration, episode, mode, checkpoint, ...); read at configure",
        live=True,
    ),
    Param("record_camera", False, "also record /camera/image_raw"),
    Param(
        "drain_s",
        10.0,
        "on deactivate, keep recording up to this long until every step of the ended episode has arrived",
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


# The parameters that name the next bag: read at configure, refused while configured.
NAMING = ("bag_path", "episode_info")
UNCONFIGURED = "unconfigured"


class RecorderNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("recorder_node")
        p = declare_parameters(self, PARAMETERS, strict=True)  # read-only but the bag's name
        # Resolved once: later changes of the working directory or of links cannot move it.
        self.root = Path(p["output_dir"]).resolve()
        if p["bag_path"]:
            self.confined(p["bag_path"])  # refuse a bad launch parameter at start-up, not mid-session
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.topics = list(RECORDED_TOPICS) + ([CAMERA_TOPIC] if p["record_camera"] else [])
        self.flush_every = int(p["flush_every"])
        self.writer: EpisodeBagWriter | None = None
        self.configured: tuple[Path, dict] | None = None  # the bag named at configure, its metadata
        self.drain_s = float(p["drain_s"])
        self.info: dict = {}
        self.stats = EpisodeStats()
        self.received = dict.fromkeys(self.topics, 0)
        # The writer is shared by the recording callbacks and the transitions (deactivate closes it).
        self.lock = threading.Lock()
        # Latched topics (the gamepad's status) change rarely: the latest one opens every bag, so a
        # bag says whether the pad was there even if it never changed during the episode.
        self.latched: dict[str, bytes] = {}
        # Their own callback group: messages keep arriving while deactivate waits for the last steps
        # (the transitions are served in the default group; run with two threads).
        recording = MutuallyExclusiveCallbackGroup()
        for topic in self.topics:
            self.create_subscription(
                msg_class(topic_info(topic).type),
                topic,
                lambda data, t=topic: self.on_message(t, data),
                qos(topic, int(p["queue_depth"])),
                raw=True,
                callback_group=recording,
            )
        # Finished bags for a trainer on another host; the one being written is never offered.
        self.offer = BagOffer(self.root, busy=lambda: self.writer.path if self.writer is not None else None)
        self.pub_reply = publisher(self, "recorder/bag_reply")
        subscription(self, "recorder/bag_request", self.on_bag_request)

    def state_label(self) -> str:
        return self._state_machine.current_state[1]

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
        with self.lock:
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
            if param.name in NAMING and self.state_label() != UNCONFIGURED:
                where = self.configured[0] if self.configured else "its bag"
                reason = (
                    f"{param.name} is read at configure: the recorder is configured for {where} (clean it up first)"
                )
                return SetParametersResult(successful=False, reason=reason)
            if param.name == "bag_path" and param.value:
                try:
                    self.confined(str(param.value))
                except ValueError as exc:
                    self.get_logger().error(str(exc))
                    return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    # ---- the lifecycle: one episode per configure -> activate -> deactivate -> cleanup -------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Name the bag from ``bag_path`` and ``episode_info``; refuse a bad or existing path."""
        try:
            info = json.loads(self.get_parameter("episode_info").value or "{}")
            if not isinstance(info, dict):
                raise ValueError("episode_info is not a JSON object")
            wanted = self.get_parameter("bag_path").value or str(self.root / time.strftime("episode_%Y%m%d_%H%M%S"))
            path = self.confined(wanted)
            if path.exists():
                raise FileExistsError(f"{path} exists (a bag is never overwritten)")
        except Exception as exc:  # bad JSON, outside output_dir, an existing folder: stay unconfigured
            self.get_logger().error(f"cannot configure a bag: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.configured = (path, info)
        self.get_logger().info(f"configured for {path}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open the configured bag and record."""
        path, info = self.configured
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Checked again once the folders exist: a link made in between must not lead outside.
            path = self.confined(str(path))
            names = {self.resolve_topic_name(t): topic_info(t).type for t in self.topics}
            # Under the names subscribed to (``/arm1/mile/observation`` in namespace arm1), as ros2 bag would.
            writer = EpisodeBagWriter(path, names, self.flush_every)
        except Exception as exc:  # an existing folder (made since configure), a link outside: write nothing
            self.get_logger().error(f"cannot start recording {path}: {exc}")
            return TransitionCallbackReturn.FAILURE
        with self.lock:
            self.info, self.stats = info, EpisodeStats()
            now = self.get_clock().now().nanoseconds
            for topic, data in self.latched.items():
                writer.write(topic, data, now)
            self.writer = writer
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Close the bag once the ended episode's last messages are in it, or ``drain_s`` passed."""
        deadline = monotonic() + self.drain_s
        while not self.stats.complete() and monotonic() < deadline:
            time.sleep(0.02)  # the recording callbacks run meanwhile, in their own group
        with self.lock:
            writer, self.writer = self.writer, None
        if writer is None:
            return super().on_deactivate(state)
        if self.stats.end_reason == END_DISCARD:
            self.get_logger().info(f"{writer.path}: discarded by the operator (kept, left out of training)")
        if not self.stats.complete():
            self.get_logger().warning(f"closing {writer.path} before every step arrived: {self.stats.as_dict()}")
        result = {**self.info, **self.stats.as_dict(), "bag": str(writer.path), "namespace": self.get_namespace()}
        ended = self.stats.end_stamp is not None
        if not ended:  # stopped without an episode end (a timeout): kept, never trained on
            result["interrupted"] = "the episode was stopped before it ended"
        try:
            writer.close(result, complete=ended)
        except Exception as exc:
            self.get_logger().error(f"could not close {writer.path}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"recorded {writer.path}: {self.stats.as_dict()}")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.configured = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        with self.lock:
            writer, self.writer = self.writer, None
        if writer is not None:  # stopped mid-episode: a readable bag, marked so it is never trained on
            reason = "the recorder was stopped before the episode ended"
            writer.close({**self.info, **self.stats.as_dict(), "interrupted": reason}, complete=False)


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(RecorderNode, args, threads=2)  # transitions and recording side by side


if __name__ == "__main__":
    sys.exit(main())
