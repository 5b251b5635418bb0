"""policy_node: observation -> proposed action and predicted takeover probability; hot checkpoint swaps.

Observation: ``state`` (the robot state vector, simulation) or ``r3m+ee`` (the R3M embedding joined
with the end-effector position nearest to its stamp, real robot; :mod:`mile_ros.graph.obs_join`: an
embedding without a near pose, or stale against the newest pose, builds no observation and is logged,
and a missing embedding stream is reported while poses keep coming). The last 3 observations are
stacked by the policy. Every output carries the observation's stamp.

A lifecycle node (``rclpy.lifecycle``): active, it answers observations; deactivated, it proposes
nothing (arbitration's watchdog then holds the robot) until activated again, with a fresh frame
history. ``autostart`` configures and activates it at start-up. ``policy/reset`` (a new episode: forget
the frame history) stays a service: an episode's start is no change of the node's state.
"""

from __future__ import annotations

import sys

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mile_ros.graph.obs_join import PoseJoiner
from mile_ros.graph.policy_swap import SwappablePolicy
from mile_ros.graph.topics import ACTION_NAMES
from mile_ros.nodes.common import (
    AUTOSTART,
    SCHEDULING_PARAMETERS,
    Param,
    autostart,
    declare_parameters,
    monotonic,
    publisher,
    set_scheduling,
    stamp_ns,
    subscription,
    vector_msg,
)

PARAMETERS = (
    Param("checkpoint", "", "MileCheckpoint to start with (path); later ones arrive on /mile/checkpoint"),
    Param(
        "obs_source",
        "state",
        "observation: 'state' (/robot/state) or 'r3m+ee' (/camera/embedding + /robot/ee_pose)",
    ),
    Param("deterministic", True, "act with the policy's mean (true) or sample from it (false)"),
    Param(
        "max_pose_skew_s",
        0.1,
        "r3m+ee: join an embedding only with an end-effector pose stamped this close to it, s",
        (0.001, 10.0),
    ),
    Param(
        "max_embedding_age_s",
        0.5,
        "r3m+ee: refuse an embedding stamped this much older than the newest pose (encoder behind), s",
        (0.01, 60.0),
    ),
    *SCHEDULING_PARAMETERS,
    AUTOSTART,
)


class PolicyNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("policy_node")
        p = declare_parameters(self, PARAMETERS, strict=True)  # read at start: read-only
        import torch

        # One observation at a time through a small MLP: extra threads only contend with the other nodes.
        torch.set_num_threads(1)
        if not p["checkpoint"]:
            raise ValueError(
                "parameter 'checkpoint' is empty: give the initial policy (mile-ros init-policy)"
            )
        self.policy = SwappablePolicy.from_file(p["checkpoint"], bool(p["deterministic"]))
        self.obs_source = p["obs_source"]
        if self.obs_source != self.policy.spec.obs_source:
            raise ValueError(
                f"obs_source {self.obs_source!r} but the checkpoint expects {self.policy.spec.obs_source!r}"
            )
        self.joiner = PoseJoiner(p["max_pose_skew_s"], p["max_embedding_age_s"])
        self.last_embedding_at = self.last_pose_at = None  # monotonic arrival times
        self.last_stamp: int | None = None
        self.cache: tuple = ()
        self.pub_obs = publisher(self, "mile/observation")
        self.pub_prop = publisher(self, "mile/proposed_action")
        self.pub_prob = publisher(self, "mile/intervention_probability")
        self.pub_active = publisher(self, "mile/active_checkpoint")
        if self.obs_source == "state":
            subscription(self, "robot/state", self.on_state)
        elif self.obs_source == "r3m+ee":
            subscription(self, "camera/embedding", self.on_embedding)
            subscription(self, "robot/ee_pose", self.on_ee_pose)
            self.create_timer(1.0, self.check_embedding_stream)
        else:
            raise ValueError(f"obs_source must be 'state' or 'r3m+ee', got {self.obs_source!r}")
        subscription(self, "mile/checkpoint", self.on_checkpoint)
        self.create_service(Trigger, "policy/reset", self.on_reset)
        # Measured (docs/architecture.md): the proposal -> executed tail is this node preempted
        # while it publishes; a real-time priority below arbitration's takes it away.
        set_scheduling(self, int(p["nice"]), int(p["realtime_priority"]))
        self.pub_active.publish(String(data=self.policy.path))
        self.active = False
        autostart(self, bool(p["autostart"]))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Answer observations again, from a fresh frame history."""
        self.forget()
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Propose nothing until activated again."""
        self.active = False
        return super().on_deactivate(state)

    def forget(self) -> None:
        self.policy.reset()
        self.last_stamp, self.cache = None, ()

    def on_state(self, msg) -> None:
        self.step(stamp_ns(msg), np.asarray(msg.position, dtype=np.float64))

    def on_ee_pose(self, msg) -> None:
        pos = msg.pose.position
        self.joiner.add_pose(stamp_ns(msg), (pos.x, pos.y, pos.z))
        self.last_pose_at = monotonic()

    def on_embedding(self, msg) -> None:
        self.last_embedding_at = monotonic()
        stamp = stamp_ns(msg)
        if stamp == self.last_stamp:  # a resend: the same answer (step() repeats it)
            self.step(stamp, np.zeros(0))
            return
        frame, why = self.joiner.join(stamp, msg.position)
        if frame is None:
            self.get_logger().error(f"embedding at {stamp} ns: no observation, no proposal: {why}",
                                    throttle_duration_sec=1.0)
            return
        self.step(stamp, frame)

    def check_embedding_stream(self) -> None:
        """Poses keep coming but embeddings do not: say so (the arbitration watchdog holds the arm)."""
        if self.last_pose_at is None:
            return
        since = monotonic() - (self.last_embedding_at or -1e9)
        if since > self.joiner.max_age_ns / 1e9:
            what = "no /camera/embedding yet" if self.last_embedding_at is None else (
                f"no /camera/embedding for {since:.1f} s")
            self.get_logger().error(f"{what}: no proposals (is r3m_encoder running?)", throttle_duration_sec=5.0)

    def step(self, stamp: int, frame: np.ndarray) -> None:
        if not self.active:
            return
        if stamp == self.last_stamp:  # lockstep resend of the same observation: same answer
            for pub, msg in zip((self.pub_obs, self.pub_prop, self.pub_prob), self.cache):
                if msg is not None:
                    pub.publish(msg)
            return
        try:
            action, prob, _ = self.policy.act(frame)
        except ValueError as exc:  # wrong size, NaN: no command rather than a wrong one
            self.get_logger().error(f"observation at {stamp} ns refused: {exc}", throttle_duration_sec=1.0)
            return
        names = [f"obs_{i:02d}" for i in range(len(frame))]
        obs_msg = vector_msg(stamp, names, frame)
        prop_msg = vector_msg(stamp, ACTION_NAMES, action)
        prob_msg = vector_msg(stamp, ["p_intervene"], [prob]) if prob is not None else None
        self.pub_obs.publish(obs_msg)
        self.pub_prop.publish(prop_msg)
        if prob_msg is not None:
            self.pub_prob.publish(prob_msg)
        self.last_stamp, self.cache = stamp, (obs_msg, prop_msg, prob_msg)

    def on_checkpoint(self, msg: String) -> None:
        if not msg.data or msg.data == self.policy.path:
            return
        self.get_logger().info(f"loading checkpoint {msg.data}")
        self.policy.load_async(msg.data, self.loaded)

    def loaded(self, path: str, error: str | None) -> None:
        if error:
            self.get_logger().error(f"kept {self.policy.path}: could not load {path}: {error}")
            return
        self.get_logger().info(f"now acting with {path}")
        self.pub_active.publish(String(data=path))

    def on_reset(self, request, response):
        self.forget()
        response.success, response.message = True, f"policy reset ({self.policy.path})"
        return response


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(PolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
