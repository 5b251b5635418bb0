"""arbitration_node: proposal + gamepad -> executed command, intervention flag, human action.

Logic: :mod:`mile_ros.graph.arbitration`. With ``wait_for_teleop`` (lockstep simulation) a proposal
is executed once a Joy stamped at or after it has arrived, or after ``teleop_wait_s``.
"""

from __future__ import annotations

import sys

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from mile_ros.graph.arbitration import Arbiter, ArbitrationConfig, Command, safe_on_joy
from mile_ros.graph.joy_mapping import load_joy_mapping
from mile_ros.graph.topics import ACTION_NAMES, SOURCE_HOLD
from mile_ros.nodes.common import (
    SCHEDULING_PARAMETERS,
    Param,
    declare_parameters,
    monotonic,
    publisher,
    set_scheduling,
    stamp_ns,
    subscription,
    vector_msg,
)

PARAMETERS = (
    Param("joy_mapping", "ps3", "gamepad mapping: a name in config/ (ps3, sdl) or a YAML path"),
    Param(
        "watchdog_timeout_s",
        0.5,
        "no fresh proposal (or teleop while intervening) for this long -> hold",
        (0.01, 10.0),
    ),
    Param(
        "max_jump",
        0.25,
        "largest change of any action component between two commands after a switch",
        (0.01, 2.0),
    ),
    Param("watchdog_rate_hz", 20.0, "how often the watchdog checks for stale inputs", (1.0, 1000.0)),
    Param(
        "wait_for_teleop",
        False,
        "lockstep: execute a proposal only once a Joy stamped at or after it arrived",
    ),
    Param(
        "teleop_wait_s",
        0.2,
        "lockstep: longest wait for that Joy before deciding with the latest one",
        (0.0, 10.0),
    ),
    *SCHEDULING_PARAMETERS,
)


class ArbitrationNode(Node):
    def __init__(self) -> None:
        super().__init__("arbitration_node")
        p = declare_parameters(self, PARAMETERS)
        # On 2 shared cores the proposal waits for a CPU behind rendering and the networks: this
        # node's few microseconds per message go first (measured in docs/architecture.md).
        set_scheduling(self, int(p["nice"]), int(p["realtime_priority"]))
        self.arbiter = Arbiter(
            load_joy_mapping(p["joy_mapping"]),
            ArbitrationConfig(watchdog_timeout=p["watchdog_timeout_s"], max_jump=p["max_jump"]),
            act_dim=len(ACTION_NAMES),
        )
        self.wait_for_teleop = bool(p["wait_for_teleop"])
        self.teleop_wait = float(p["teleop_wait_s"])
        self.pending: tuple[int, float] | None = None  # proposal stamp awaiting its Joy, since when
        self.last: Command | None = None
        self.pub_exec = publisher(self, "/mile/executed_action")
        self.pub_human = publisher(self, "/mile/human_action")
        self.pub_flag = publisher(self, "/mile/intervention")
        subscription(self, "/mile/proposed_action", self.on_proposal)
        subscription(self, "/teleop/joy", self.on_joy)
        self.create_service(Trigger, "/arbitration/reset", self.on_reset)
        # A steady clock: under use_sim_time a node timer stops with simulated time, the watchdog must not.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / p["watchdog_rate_hz"], self.on_watchdog, clock=steady)

    def on_proposal(self, msg) -> None:
        stamp = stamp_ns(msg)
        if self.last is not None and self.last.stamp_ns == stamp and self.last.source != SOURCE_HOLD:
            self.publish(self.last)  # a lockstep resend: answer with the same command
            return
        try:
            self.arbiter.on_proposal(stamp, msg.position, monotonic())
        except ValueError as exc:
            self.get_logger().error(f"proposal ignored: {exc}")
            return
        if self.wait_for_teleop and not self.arbiter.has_joy_for(stamp):
            self.pending = (stamp, monotonic())
            return
        self.execute(stamp)

    def on_joy(self, msg) -> None:
        error = safe_on_joy(self.arbiter, stamp_ns(msg), list(msg.axes), list(msg.buttons), monotonic())
        if error:
            self.get_logger().error(f"Joy ignored: {error}", throttle_duration_sec=2.0)
            return
        if self.pending is not None and self.arbiter.has_joy_for(self.pending[0]):
            self.execute(self.pending[0])

    def on_watchdog(self) -> None:
        now = monotonic()
        if self.pending is not None and now - self.pending[1] >= self.teleop_wait:
            self.execute(self.pending[0])  # the Joy did not come: decide with the latest one
            return
        arb = self.arbiter
        human_active = arb.joy_takeover and arb.joy_fresh(now)
        human_lost = arb.joy_takeover and not arb.joy_fresh(now)
        # Only a policy that was heard and fell silent: before the first proposal of an episode
        # there is nothing to stop, and a hold then would pre-empt the first real command.
        robot_lost = arb.proposal is not None and not arb.proposal_fresh(now)
        if human_lost or (robot_lost and not human_active):
            # Stamped with this node's clock: a hold answers no observation.
            self.publish(arb.command(now, self.get_clock().now().nanoseconds))

    def execute(self, stamp: int) -> None:
        self.pending = None
        self.last = self.arbiter.command(monotonic(), stamp)
        self.publish(self.last)

    def publish(self, cmd: Command) -> None:
        # The command first: it is what the latency target is about; the record's extras follow.
        self.pub_exec.publish(vector_msg(cmd.stamp_ns, ACTION_NAMES, cmd.action, cmd.source))
        self.pub_flag.publish(Bool(data=cmd.intervention))
        if cmd.human_action is not None:
            self.pub_human.publish(vector_msg(cmd.stamp_ns, ACTION_NAMES, cmd.human_action, "human"))

    def on_reset(self, request, response):
        self.arbiter.reset()
        self.pending, self.last = None, None
        response.success, response.message = True, "arbitration reset"
        return response


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(ArbitrationNode, args, freeze_gc=True)


if __name__ == "__main__":
    sys.exit(main())
