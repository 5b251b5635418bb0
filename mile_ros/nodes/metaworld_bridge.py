"""metaworld_bridge: a Metaworld v3 task on the robot topics, in real time or in lockstep.

Real time: a timer steps the task at ``control_rate_hz`` with the latest executed command (zero
motion when none arrived within ``command_timeout_s``). Lockstep: the task steps as soon as the
command answering the current observation arrives, and ``/clock`` carries simulated time.

A lifecycle node (``rclpy.lifecycle``): active, it runs episodes (``episode/reset`` starts one);
deactivated, the running episode pauses until it is activated again. ``autostart`` configures and
activates it at start-up.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from mile_ros.graph.sim_bridge import BridgeCore, StepOutput
from mile_ros.graph.topics import ACTION_NAMES
from mile_ros.nodes.common import (
    AUTOSTART,
    Param,
    autostart,
    declare_parameters,
    monotonic,
    publisher,
    stamp_ns,
    subscription,
    to_time,
    vector_msg,
)

PARAMETERS = (
    Param("task", "drawer-open-v3", "Metaworld v3 task name"),
    Param(
        "seed",
        0,
        "seed of the next reset (the session manager sets it before each episode)",
        (0, 2**31 - 1),
        live=True,
    ),
    Param("lockstep", True, "step when the command for the current step arrives (true) or on a timer (false)"),
    Param(
        "control_rate_hz",
        20.0,
        "control rate: timer rate in real time, simulated time per step in lockstep",
        (0.1, 1000.0),
    ),
    Param("render", False, "publish a rendered camera image every step"),
    Param("image_size", 224, "rendered image width and height, pixels", (16, 1024)),
    Param(
        "max_episode_steps",
        0,
        "end an episode after this many steps; 0: the task's own limit (500)",
        (0, 100000),
    ),
    Param("stop_on_success", True, "end an episode at the first successful step"),
    Param(
        "command_timeout_s",
        0.5,
        "real time: a command older than this is replaced by zero motion",
        (0.01, 10.0),
        live=True,
    ),
    Param(
        "resend_s",
        0.5,
        "lockstep: publish the observation again if no command came for this long",
        (0.05, 10.0),
        live=True,
    ),
    AUTOSTART,
)


class MetaworldBridge(LifecycleNode):
    """A lifecycle node: active, it runs episodes; deactivated, the running one pauses (no steps) until
    activated again. ``autostart`` (default) configures and activates it at start-up."""

    def __init__(self) -> None:
        super().__init__("metaworld_bridge")
        # Live: seed (read at each reset), command_timeout_s and resend_s (applied when set); the rest
        # build the environment at start-up and are read-only.
        p = declare_parameters(self, PARAMETERS, strict=True, apply=self.apply)
        if p["render"]:
            os.environ.setdefault("MUJOCO_GL", "egl")
        from mile_ros.sim import make_env

        self.env = make_env(
            p["task"],
            seed=p["seed"],
            render=p["render"],
            image_size=p["image_size"],
            stop_on_success=p["stop_on_success"],
        )
        period_ns = round(1e9 / p["control_rate_hz"])
        self.core = BridgeCore(self.env, period_ns, p["max_episode_steps"])
        self.lockstep, self.render = bool(p["lockstep"]), bool(p["render"])
        self.command_timeout, self.resend_s = p["command_timeout_s"], p["resend_s"]
        self.latest_cmd: tuple[np.ndarray, float] | None = None
        self.last_publish = monotonic()
        self.pub_state = publisher(self, "robot/state")
        self.pub_pose = publisher(self, "robot/ee_pose")
        self.pub_success = publisher(self, "robot/success")
        self.pub_image = publisher(self, "camera/image_raw")
        self.pub_end = publisher(self, "episode/end")
        self.pub_clock = publisher(self, "/clock") if self.lockstep else None
        subscription(self, "mile/executed_action", self.on_command)
        self.create_service(Trigger, "episode/reset", self.on_reset)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        period = 1.0 / p["control_rate_hz"]
        self.create_timer(period if not self.lockstep else min(period, 0.05), self.on_timer, clock=steady)
        self.active = False
        autostart(self, bool(p["autostart"]))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Run episodes: a paused one resumes (an ended one stays ended until episode/reset)."""
        self.core.resume()
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Pause: no steps until activated again."""
        self.core.pause()
        self.active = False
        return super().on_deactivate(state)

    def apply(self, values: dict) -> None:
        """Live parameters set at run time."""
        self.command_timeout = float(values.get("command_timeout_s", self.command_timeout))
        self.resend_s = float(values.get("resend_s", self.resend_s))

    def publish(self, out: StepOutput) -> None:
        stamp = to_time(out.stamp_ns)
        if self.pub_clock is not None:
            self.pub_clock.publish(ClockMsg(clock=stamp))
        self.pub_state.publish(vector_msg(out.stamp_ns, [f"obs_{i:02d}" for i in range(len(out.frame))], out.frame))
        ee = self.env.ee_position()
        if ee is not None:
            from geometry_msgs.msg import PoseStamped

            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id = stamp, "world"
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in ee)
            pose.pose.orientation.w = 1.0
            self.pub_pose.publish(pose)
        self.pub_success.publish(Bool(data=out.success))
        if self.render:
            image = self.env.render()
            msg = Image(height=image.shape[0], width=image.shape[1], encoding="rgb8", step=image.shape[1] * 3)
            msg.header.stamp, msg.header.frame_id = stamp, "camera"
            msg.data = image.tobytes()
            self.pub_image.publish(msg)
        if out.ended:
            self.pub_end.publish(
                vector_msg(
                    out.stamp_ns,
                    ["steps", "success", "return", "duration_s"],
                    [out.steps, float(out.success), out.episode_return, out.steps * self.core.period / 1e9],
                    out.reason,
                )
            )
        self.last_publish = monotonic()

    def on_command(self, msg) -> None:
        action = np.asarray(msg.position, dtype=np.float64)
        if action.shape != (len(ACTION_NAMES),) or not np.isfinite(action).all():
            self.get_logger().error(f"command refused (need {len(ACTION_NAMES)} finite values): {action}")
            return
        self.latest_cmd = (action, monotonic())
        cur = self.core.current
        if self.lockstep and self.core.running and cur is not None and stamp_ns(msg) == cur.stamp_ns:
            self.publish(self.core.step(action))

    def on_timer(self) -> None:
        if not self.core.running or self.core.current is None:
            return
        if self.lockstep:  # a lost best-effort observation must not stall the loop
            if monotonic() - self.last_publish >= self.resend_s:
                self.publish(self.core.current)
            return
        fresh = self.latest_cmd is not None and monotonic() - self.latest_cmd[1] <= self.command_timeout
        action = self.latest_cmd[0] if fresh else np.zeros(len(ACTION_NAMES))
        self.publish(self.core.step(action))

    def on_reset(self, request, response):
        if not self.active:
            response.success, response.message = False, "inactive: activate the bridge first"
            return response
        seed = int(self.get_parameter("seed").value)
        out = self.core.reset(seed)
        self.publish(out)
        response.success, response.message = True, f"episode started (seed {seed}, stamp {out.stamp_ns})"
        return response

    def close(self) -> None:
        self.env.close()


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(MetaworldBridge, args)


if __name__ == "__main__":
    sys.exit(main())
