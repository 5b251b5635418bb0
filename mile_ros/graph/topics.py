"""Topic and service names, message types and QoS classes: written once, used by every node.

Names are relative (``mile/observation``), so a node started in a namespace (``__ns:=/arm1``, a launch
file's ``namespace``) lives under it: two arms share one ROS domain. Only ``/clock`` is absolute (one
simulated time per domain). A bag holds the names as recorded (``/arm1/mile/observation``; bags from
before the change ``/mile/observation``); :func:`bag_topic` reads any of them as the one root name.

QoS classes are names (``sensor``, ``reliable``, ``latched``) so this module stays free of rclpy;
:func:`mile_ros.nodes.common.qos` turns them into rclpy profiles. docs/interfaces.md lists the same.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACTION_NAMES",
    "RECORDED_TOPICS",
    "RENAMED",
    "SERVICES",
    "TOPICS",
    "Topic",
    "bag_topic",
    "relative_topic",
    "topic_info",
]

ACTION_NAMES = ("dx", "dy", "dz", "gripper")

# frame_id values of mile/executed_action: who commanded this step.
SOURCE_ROBOT, SOURCE_HUMAN, SOURCE_HOLD = "robot", "human", "hold"

# frame_id of episode/end (the reason) with which the operator throws an episode away: its bag
# is kept, marked ``discarded`` in its metadata, and left out of training and of the metrics.
END_DISCARD = "discard"


@dataclass(frozen=True)
class Topic:
    name: str
    type: str  # ROS 2 type name, e.g. sensor_msgs/msg/JointState
    qos: str  # sensor | reliable | latched


def _t(name: str, type_: str, qos: str) -> Topic:
    return Topic(name, type_, qos)


JOINT_STATE = "sensor_msgs/msg/JointState"
TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        _t("robot/state", JOINT_STATE, "sensor"),
        _t("robot/ee_pose", "geometry_msgs/msg/PoseStamped", "sensor"),
        _t("robot/success", "std_msgs/msg/Bool", "reliable"),
        _t("camera/image_raw", "sensor_msgs/msg/Image", "sensor"),
        _t("camera/embedding", JOINT_STATE, "sensor"),
        _t("mile/observation", JOINT_STATE, "reliable"),
        _t("mile/proposed_action", JOINT_STATE, "reliable"),
        _t("mile/intervention_probability", JOINT_STATE, "reliable"),
        _t("teleop/joy", "sensor_msgs/msg/Joy", "reliable"),
        _t("mile/executed_action", JOINT_STATE, "reliable"),
        _t("mile/human_action", JOINT_STATE, "reliable"),
        _t("mile/intervention", "std_msgs/msg/Bool", "reliable"),
        _t("mile/help_request", "std_msgs/msg/Bool", "latched"),  # the robot asks for a takeover (arbitration)
        _t("/clock", "rosgraph_msgs/msg/Clock", "clock"),
        _t("episode/end", JOINT_STATE, "reliable"),
        _t("mile/checkpoint", "std_msgs/msg/String", "latched"),
        _t("mile/active_checkpoint", "std_msgs/msg/String", "latched"),
        _t("session/progress", "std_msgs/msg/String", "latched"),
        _t("robot/safety", JOINT_STATE, "reliable"),
        _t("teleop/status", "std_msgs/msg/String", "latched"),
        # Finished bags to a trainer on another host (mile_ros.graph.bag_transfer): JSON requests, and
        # replies of one JSON line plus the chunk's bytes.
        _t("recorder/bag_request", "std_msgs/msg/String", "reliable"),
        _t("recorder/bag_reply", "std_msgs/msg/UInt8MultiArray", "reliable"),
    )
}

# The learning record and what an analyst needs next to it; the camera only when it is rendered.
RECORDED_TOPICS = (
    "robot/state",
    "robot/ee_pose",
    "robot/success",
    "mile/observation",
    "mile/proposed_action",
    "mile/intervention_probability",
    "teleop/joy",
    "mile/executed_action",
    "mile/human_action",
    "mile/intervention",
    "episode/end",
    # Real robot: the safety layer's counters and the gamepad's state (why an episode ended pad_lost).
    "robot/safety",
    "teleop/status",
)
CAMERA_TOPIC = "camera/image_raw"

# name -> ROS 2 service type. The recorder, the bridge and the driver are lifecycle nodes: their
# transitions (configure, activate, deactivate, cleanup) are rclpy.lifecycle's services under their own
# names (recorder_node/change_state); the bridge's and driver's deactivate pauses the episode.
SERVICES: dict[str, str] = {
    "episode/reset": "std_srvs/srv/Trigger",
    "policy/reset": "std_srvs/srv/Trigger",
    "arbitration/reset": "std_srvs/srv/Trigger",
    "simulated_human/reset": "std_srvs/srv/Trigger",
    "simulated_human/enable": "std_srvs/srv/SetBool",
    "trainer/train": "std_srvs/srv/Trigger",
    "bag_mirror/sync": "std_srvs/srv/Trigger",
}

# Names of earlier versions -> today's, for bags recorded before a rename. The episode interface was
# the simulator's (sim/...) before the robot's driver served it too; services are not recorded.
RENAMED: dict[str, str] = {"sim/episode_end": "episode/end"}


def relative_topic(name: str) -> str:
    """The name in :data:`TOPICS` that ``name`` stands for: relative (``mile/observation``), absolute
    (``/mile/observation``), under a namespace (``/arm1/mile/observation``) or an earlier name;
    ``/clock`` is itself. ValueError for a name that is none of mile_ros's topics."""
    if name in TOPICS:
        return name
    bare = name.strip("/")
    parts = bare.split("/")
    for start in range(len(parts)):  # the longest known tail: the namespace is what precedes it
        tail = "/".join(parts[start:])
        tail = RENAMED.get(tail, tail)
        if tail in TOPICS:
            return tail
        if "/" + tail in TOPICS:  # /clock
            return "/" + tail
    raise ValueError(f"unknown topic {name!r}: not in mile_ros.graph.topics.TOPICS")


def topic_info(name: str) -> Topic:
    """Type and QoS of a topic by any of the forms :func:`relative_topic` reads."""
    return TOPICS[relative_topic(name)]


def bag_topic(name: str) -> str:
    """How a bag's reader names a recorded topic: the root name (``/mile/observation``) whatever the
    namespace it was recorded in and whichever earlier name it had; a topic mile_ros does not know
    (another package's) keeps its name."""
    try:
        rel = relative_topic(name)
    except ValueError:
        return name
    return rel if rel.startswith("/") else "/" + rel
