"""arbitration_node: proposal + gamepad -> executed command, intervention flag, human action.

Logic: :mod:`mile_ros.graph.arbitration`. With ``wait_for_teleop`` (lockstep simulation) a proposal
is executed once a Joy stamped at or after it has arrived, or after ``teleop_wait_s``.

With ``ask_threshold`` above 0 the robot asks for help (:mod:`mile_ros.graph.asking`): each executed
proposal steps the request rule with the latest ``mile/intervention_probability`` (one heard within
the watchdog timeout; under lockstep usually this step's, otherwise the previous step's); while a
request is open the command is ``hold`` unless the human drives, and ``mile/help_request`` (latched
Bool) says whether one is open. Every parameter applies when set at run time except
the scheduling ones (``nice``, ``realtime_priority``), which are read-only.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from mile_ros.graph.arbitration import Arbiter, ArbitrationConfig, Command, safe_on_joy
from mile_ros.graph.asking import AskConfig, HelpRequester
from mile_ros.graph.joy_mapping import JoyMapping, JoyMappingError, load_joy_mapping
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
    Param(
        "ask_threshold",
        0.0,
        "ask for help (hold and publish mile/help_request) when the predicted P(I=1|s) is above this; 0: never ask",
        (0.0, 0.999),
    ),
    Param(
        "ask_timeout_steps",
        AskConfig.__dataclass_fields__["timeout_steps"].default,
        "held steps an unanswered help request lasts before the robot resumes",
        (1, 100000),
    ),
    Param(
        "ask_cooldown_steps",
        AskConfig.__dataclass_fields__["cooldown_steps"].default,
        "steps the robot drives itself after a help request before it may ask again",
        (0, 100000),
    ),
    # Read at start only: the threads' scheduling is set once.
    *(dataclasses.replace(p, read_only=True) for p in SCHEDULING_PARAMETERS),
)


class ArbitrationNode(Node):
    def __init__(self) -> None:
        super().__init__("arbitration_node")
        p = declare_parameters(self, PARAMETERS)
        # On 2 shared cores the proposal waits for a CPU behind rendering and the networks: this
        # node's few microseconds per message go first (measured in docs/architecture.md).
        set_scheduling(self, int(p["nice"]), int(p["realtime_priority"]))
        settings = self.settings(p)
        self.arbiter = Arbiter(settings["mapping"], settings["config"], act_dim=len(ACTION_NAMES))
        self.requester: HelpRequester | None = None
        self.pending: tuple[int, float] | None = None  # proposal stamp awaiting its Joy, since when
        self.last: Command | None = None
        self.asked_hold = False  # the last command is a hold because the robot asked for help
        self.probability: tuple[float, float] | None = None  # latest predicted P(I=1|s), when it came
        self.pub_exec = publisher(self, "mile/executed_action")
        self.pub_human = publisher(self, "mile/human_action")
        self.pub_flag = publisher(self, "mile/intervention")
        self.pub_help = publisher(self, "mile/help_request")
        subscription(self, "mile/proposed_action", self.on_proposal)
        subscription(self, "teleop/joy", self.on_joy)
        subscription(self, "mile/intervention_probability", self.on_probability)
        self.create_service(Trigger, "arbitration/reset", self.on_reset)
        self.watchdog = None
        self.apply(settings)
        self.pub_help.publish(Bool(data=False))
        self.add_on_set_parameters_callback(self.on_set_parameters)

    def settings(self, values: dict[str, Any]) -> dict[str, Any]:
        """What the parameters ``values`` make: ValueError (or JoyMappingError) for what cannot be used."""
        threshold = float(values["ask_threshold"])
        ask = None
        if threshold > 0:
            ask = AskConfig(threshold, int(values["ask_timeout_steps"]), int(values["ask_cooldown_steps"]))
        return {
            "mapping": load_joy_mapping(values["joy_mapping"]),
            "config": ArbitrationConfig(
                watchdog_timeout=float(values["watchdog_timeout_s"]), max_jump=float(values["max_jump"])
            ),
            "wait_for_teleop": bool(values["wait_for_teleop"]),
            "teleop_wait": float(values["teleop_wait_s"]),
            "watchdog_rate_hz": float(values["watchdog_rate_hz"]),
            "ask": ask,
        }

    def apply(self, s: dict[str, Any]) -> None:
        mapping: JoyMapping = s["mapping"]
        self.arbiter.mapping, self.arbiter.config = mapping, s["config"]
        self.wait_for_teleop, self.teleop_wait = s["wait_for_teleop"], s["teleop_wait"]
        if self.watchdog is None or s["watchdog_rate_hz"] != self.watchdog_rate_hz:
            if self.watchdog is not None:
                self.destroy_timer(self.watchdog)
            # A steady clock: under use_sim_time a node timer stops with simulated time, the watchdog must not.
            steady = Clock(clock_type=ClockType.STEADY_TIME)
            self.watchdog = self.create_timer(1.0 / s["watchdog_rate_hz"], self.on_watchdog, clock=steady)
            self.watchdog_rate_hz = s["watchdog_rate_hz"]
        old = self.requester
        if s["ask"] is None:
            self.requester = None
        elif old is None or old.config != s["ask"]:
            self.requester = HelpRequester(s["ask"])  # a changed rule starts afresh
        if old is not None and old.asking and self.requester is not old:
            self.pub_help.publish(Bool(data=False))

    def on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Apply a run-time change at once (all of it, or none when any value cannot be used)."""
        values = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        values.update({p.name: p.value for p in params})
        try:
            settings = self.settings(values)
        except (ValueError, JoyMappingError, OSError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.apply(settings)
        return SetParametersResult(successful=True)

    def on_probability(self, msg) -> None:
        if len(msg.position) == 1 and math.isfinite(msg.position[0]):
            self.probability = (float(msg.position[0]), monotonic())

    def on_proposal(self, msg) -> None:
        stamp = stamp_ns(msg)
        if (
            self.last is not None
            and self.last.stamp_ns == stamp
            and (self.last.source != SOURCE_HOLD or self.asked_hold)
        ):
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
        now = monotonic()
        hold = False
        if self.requester is not None:
            fresh = self.probability is not None and now - self.probability[1] <= self.arbiter.config.watchdog_timeout
            step = self.requester.step(self.probability[0] if fresh else None, self.arbiter.human_active(now))
            hold = step.asking
            if step.event:
                self.pub_help.publish(Bool(data=step.asking))
                self.get_logger().info(f"help request: {step.event}")
        self.last = self.arbiter.command(now, stamp, hold=hold)
        self.asked_hold = hold and self.last.source == SOURCE_HOLD
        self.publish(self.last)

    def publish(self, cmd: Command) -> None:
        # The command first: it is what the latency target is about; the record's extras follow.
        self.pub_exec.publish(vector_msg(cmd.stamp_ns, ACTION_NAMES, cmd.action, cmd.source))
        self.pub_flag.publish(Bool(data=cmd.intervention))
        if cmd.human_action is not None:
            self.pub_human.publish(vector_msg(cmd.stamp_ns, ACTION_NAMES, cmd.human_action, "human"))

    def on_reset(self, request, response):
        self.arbiter.reset()
        self.pending, self.last, self.asked_hold, self.probability = None, None, False, None
        if self.requester is not None:
            self.requester.reset()
        self.pub_help.publish(Bool(data=False))
        response.success, response.message = True, "arbitration reset"
        return response


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(ArbitrationNode, args, freeze_gc=True)


if __name__ == "__main__":
    sys.exit(main())
