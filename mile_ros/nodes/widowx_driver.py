"""widowx_driver: the arm behind the safety layer, with the Metaworld bridge's topics and services.

Logic: :mod:`mile_ros.robot.arm`, :mod:`mile_ros.robot.safety`, :mod:`mile_ros.robot.backends`.
Subscribes ``/mile/executed_action`` (``[dx, dy, dz, gripper]`` in [-1, 1], times ``max_step_m`` metres;
``frame_id`` ``hold`` stops the arm); publishes ``/robot/state`` (joint positions), ``/robot/ee_pose``
and ``/robot/safety`` at ``state_rate_hz``. Services: ``/episode/reset`` (home, then accept commands, as the
bridge's episode start), ``/robot/home``, ``/robot/estop`` (latches),
``/robot/clear_estop``, ``/robot/torque``.

A real arm has no success detector: the operator ends episodes with the pad's success / failure /
discard buttons (``/teleop/joy``, read with ``joy_mapping``), and the driver publishes ``/robot/success``
and ``/episode/end`` as the Metaworld bridge does (reasons ``success``, ``failure``, ``discard``,
``time_limit``); the arm then holds until the next ``/episode/reset``. The home button homes the arm.

With ``hold_without_pad``, a gamepad lost mid-episode (``/teleop/status`` from ps3_teleop) ends the
episode with reason ``pad_lost`` (so the recording says why) and the arm holds; an episode reset while
the pad is missing homes the arm and waits, holding, until the pad is back.

The episode's phases and ends are :class:`mile_ros.graph.episode.Episode`, the simulator bridge's machine;
an episode runs from start-up, so the arm takes commands before the first reset.

A lifecycle node (``rclpy.lifecycle``), as the bridge: deactivated, the arm holds and ignores commands
until activated again (an ended episode stays ended until ``/episode/reset``); ``episode/reset`` is
refused while inactive. ``autostart`` configures and activates it at start-up.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from mile_ros.graph.episode import OPERATOR_REASONS, SUCCESS, WAITING, Episode, EpisodeEnd
from mile_ros.graph.joy_mapping import JoyMappingError, load_joy_mapping
from mile_ros.graph.topics import SOURCE_HOLD
from mile_ros.nodes.common import AUTOSTART, Param, autostart, declare_parameters, publisher, subscription, vector_msg
from mile_ros.robot.arm import SafeArm
from mile_ros.robot.backends import make_backend
from mile_ros.robot.safety import SafetyConfig, SafetyLayer

PARAMETERS = (
    Param(
        "backend", "interbotix", "interbotix (real WidowX, or interbotix's simulated SDK) or sim (kinematic stand-in)"
    ),
    Param("robot_model", "wx250s", "interbotix robot model (WidowX 250 6-DoF: wx250s)"),
    Param("group_name", "arm", "interbotix joint group of the arm"),
    Param("gripper_name", "gripper", "interbotix gripper joint"),
    Param("moving_time", 0.2, "interbotix: duration of each short move, s", (0.02, 5.0)),
    Param("accel_time", 0.1, "interbotix: acceleration time of each move (at most moving_time/2), s", (0.01, 2.5)),
    Param("ee_roll", 0.0, "fixed end-effector roll, rad", (-math.pi, math.pi)),
    Param("ee_pitch", math.pi / 2, "fixed end-effector pitch, rad (pi/2: gripper pointing down)", (-math.pi, math.pi)),
    Param("ee_yaw_auto", True, "6-DoF: yaw follows atan2(y, x) (true) or stays at ee_yaw (false)"),
    Param("ee_yaw", 0.0, "fixed end-effector yaw when ee_yaw_auto is false, rad", (-math.pi, math.pi)),
    Param("sim_home", [0.3, 0.0, 0.2], "sim backend: home position of the end effector, m"),
    Param("workspace_min", [0.15, -0.25, 0.04], "workspace box lower corner x, y, z in the base frame, m"),
    Param("workspace_max", [0.45, 0.25, 0.35], "workspace box upper corner x, y, z in the base frame, m"),
    Param("max_step_m", 0.01, "metres per unit of normalised action, per axis and step", (1e-4, 0.1)),
    Param("max_motion_m", 0.015, "longest step (Euclidean), m; longer ones are shortened", (1e-4, 0.2)),
    Param("command_timeout_s", 0.5, "no command for this long: the arm holds", (0.01, 10.0)),
    Param("state_rate_hz", 20.0, "rate of /robot/state, /robot/ee_pose and /robot/safety", (1.0, 500.0)),
    Param("home_on_start", False, "go to the home pose at start-up (moves a real arm without a command!)"),
    Param("frame_id", "base_link", "frame of /robot/ee_pose (interbotix: <robot_name>/base_link)"),
    Param("joy_mapping", "ps3", "gamepad mapping whose success/failure/discard/home buttons end episodes"),
    Param("operator_buttons", True, "end episodes and home from the pad's buttons (/teleop/joy)"),
    Param(
        "seed",
        0,
        "episode seed set by the session manager (recorded; a real arm has nothing to seed)",
        (0, 2**31 - 1),
        live=True,
    ),
    Param("hold_without_pad", True, "end the episode (pad_lost) and hold while ps3_teleop reports no pad"),
    Param("max_episode_steps", 0, "end an episode after this many commands; 0: no limit", (0, 1000000)),
    AUTOSTART,
)


class WidowXDriver(LifecycleNode):
    def __init__(self, **node_options) -> None:
        super().__init__("widowx_driver", **node_options)
        p = declare_parameters(self, PARAMETERS, strict=True)  # all but seed set up the arm: read-only
        safety = SafetyLayer(
            SafetyConfig(
                workspace_min=tuple(p["workspace_min"]),
                workspace_max=tuple(p["workspace_max"]),
                max_step_m=p["max_step_m"],
                max_motion_m=p["max_motion_m"],
                command_timeout_s=p["command_timeout_s"],
            ),
            log=lambda line: self.get_logger().warning(line),
        )
        if p["backend"] == "sim":
            backend = make_backend("sim", home_position=tuple(p["sim_home"]))
        else:
            backend = make_backend(
                p["backend"],
                robot_model=p["robot_model"],
                group_name=p["group_name"],
                gripper_name=p["gripper_name"],
                moving_time=p["moving_time"],
                accel_time=p["accel_time"],
                roll=p["ee_roll"],
                pitch=p["ee_pitch"],
                yaw=None if p["ee_yaw_auto"] else p["ee_yaw"],
            )
        self.arm = SafeArm(backend, safety)
        self.frame_id = p["frame_id"]
        self.episode = Episode(int(p["max_episode_steps"]), running=True)
        if p["home_on_start"]:
            self.arm.home()
        self.pub_state = publisher(self, "robot/state")
        self.pub_pose = publisher(self, "robot/ee_pose")
        self.pub_safety = publisher(self, "robot/safety")
        self.pub_success = publisher(self, "robot/success")
        self.pub_end = publisher(self, "episode/end")
        self.mapping = load_joy_mapping(p["joy_mapping"])
        self.buttons_before: dict[str, bool] = {}
        subscription(self, "mile/executed_action", self.on_command)
        if p["operator_buttons"]:
            subscription(self, "teleop/joy", self.on_joy)
        if p["hold_without_pad"]:  # the pad is unknown until ps3_teleop reports (the joy node never does)
            subscription(self, "teleop/status", self.on_pad_status)
        self.create_service(Trigger, "episode/reset", self.on_reset)
        self.create_service(Trigger, "robot/home", self.on_home)
        self.create_service(Trigger, "robot/estop", self.on_estop)
        self.create_service(Trigger, "robot/clear_estop", self.on_clear_estop)
        self.create_service(SetBool, "robot/torque", self.on_torque)
        self.create_timer(1.0 / p["state_rate_hz"], self.on_timer)
        self.get_logger().info(f"widowx_driver up with backend '{p['backend']}'")
        self.active = False
        autostart(self, bool(p["autostart"]))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Accept commands again: a paused episode resumes (an ended one stays ended until a reset)."""
        self.episode.resume()
        self.active = True
        if not self.episode.running:
            self.arm.hold()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """The arm holds and ignores commands until activated again."""
        self.episode.pause()
        self.active = False
        self.arm.hold()
        return super().on_deactivate(state)

    def on_command(self, msg) -> None:
        source = f"mile/executed_action ({msg.header.frame_id or 'unlabelled'})"
        if msg.header.frame_id == SOURCE_HOLD or not self.episode.running:
            self.arm.hold()
            return
        if self.arm.step(list(msg.position), source) is not None:  # refused commands are no steps
            self.finish(self.episode.step())

    def on_joy(self, msg) -> None:
        for which in (*OPERATOR_REASONS, "home"):
            try:
                down = self.mapping.pressed(msg.buttons, which)
            except JoyMappingError as exc:
                self.get_logger().error(f"Joy ignored: {exc}", throttle_duration_sec=5.0)
                return
            rising = down and not self.buttons_before.get(which, False)
            self.buttons_before[which] = down
            if not rising:
                continue
            if which == "home":
                try:
                    self.arm.home()
                except PermissionError as exc:
                    self.get_logger().error(f"home button: {exc}")
            else:  # a real arm's return: 1 for the operator's success, else 0
                self.finish(self.episode.end(which, reward=float(which == SUCCESS)))

    def on_pad_status(self, msg) -> None:
        try:
            state = json.loads(msg.data).get("state")
        except (ValueError, AttributeError):
            self.get_logger().error(f"unreadable /teleop/status: {msg.data!r}")
            return
        waiting = self.episode.phase == WAITING
        self.finish(self.episode.operator(state == "connected"))
        if waiting and self.episode.running:
            self.get_logger().info("gamepad back: the episode starts")

    def finish(self, end: EpisodeEnd | None) -> None:
        """As the bridge: success flag, /episode/end (steps, success, return), then hold until reset."""
        if end is None:
            return
        self.arm.hold()
        stamp = self.get_clock().now().nanoseconds
        self.pub_success.publish(Bool(data=end.success))
        self.pub_end.publish(
            vector_msg(
                stamp, ["steps", "success", "return"], [end.steps, float(end.success), end.episode_return], end.reason
            )
        )
        self.get_logger().info(f"episode ended by {end.reason} after {end.steps} steps")

    def on_timer(self) -> None:
        self.arm.tick()
        state = self.arm.state()
        stamp = self.get_clock().now()
        self.pub_state.publish(vector_msg(stamp.nanoseconds, state.joint_names, state.joint_positions))
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp.to_msg(), self.frame_id
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in state.ee_position)
        q = state.ee_orientation
        pose.pose.orientation.x, pose.pose.orientation.y = float(q[0]), float(q[1])
        pose.pose.orientation.z, pose.pose.orientation.w = float(q[2]), float(q[3])
        self.pub_pose.publish(pose)
        counters = self.arm.safety.counters.as_dict()
        names = [*counters, "estopped", "holding", "gripper_closed"]
        values = [
            *counters.values(),
            float(self.arm.safety.estopped),
            float(self.arm.holding),
            float(state.gripper_closed),
        ]
        self.pub_safety.publish(vector_msg(stamp.nanoseconds, names, np.asarray(values, dtype=float)))
        self.pub_success.publish(Bool(data=self.episode.success))

    def on_reset(self, request, response):
        if not self.active:
            response.success, response.message = False, "inactive: activate the driver first"
            return response
        response = self.on_home(request, response)
        if response.success:
            if self.episode.start() == WAITING:
                response.message = "at the home pose; the episode starts when the gamepad is back"
                self.get_logger().error("episode reset without a gamepad: holding until it is connected")
            else:
                response.message = "episode started at the home pose"
        return response

    def on_home(self, request, response):
        try:
            self.arm.home()
        except PermissionError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = True, "at the home pose"
        return response

    def on_estop(self, request, response):
        self.arm.estop("e-stop service /robot/estop")
        response.success, response.message = True, "e-stop latched: call /robot/clear_estop to release"
        return response

    def on_clear_estop(self, request, response):
        was = self.arm.clear_estop()
        response.success = True
        response.message = "e-stop cleared; the arm holds until the next command" if was else "e-stop was not latched"
        return response

    def on_torque(self, request, response):
        self.arm.set_torque(bool(request.data))
        response.success, response.message = True, f"torque {'on' if request.data else 'off'}"
        return response

    def close(self) -> None:
        self.arm.hold()
        self.arm.backend.close()


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(WidowXDriver, args)


if __name__ == "__main__":
    sys.exit(main())
