"""simulated_human: the expert and the intervention model at the gamepad.

It sees the observation the policy acted on (``/mile/observation``), decides with
:meth:`mile_ros.sim.SimulatedHuman.decide`, and publishes a ``sensor_msgs/Joy`` stamped with that
observation's stamp: the takeover button held and the sticks placed (through the inverse of the
shared joy mapping) so that arbitration reads back the human's action. Its mental model of the
robot is refit on rollouts of each new policy, in the background.

A robot that asks for help (``mile/help_request``, from arbitration) is answered: the human takes
over at the next observation for ``answer_steps`` steps (:class:`mile_ros.sim.SimulatedHuman`).
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from mile_ros.graph.joy_mapping import load_joy_mapping
from mile_ros.nodes.common import Param, declare_parameters, publisher, stamp_ns, subscription, to_time

PARAMETERS = (
    Param("task", "drawer-open-v3", "Metaworld v3 task (selects the scripted expert and the preset)"),
    Param("checkpoint", "", "the robot's current policy, to fit the human's mental model on its rollouts"),
    Param("joy_mapping", "ps3", "gamepad mapping shared with arbitration: a name in config/ or a YAML path"),
    Param("mental_rollouts", 100, "rollouts of the robot's policy the mental model is fit on", (1, 10000)),
    Param(
        "target_intervention_rate",
        0.3,
        "calibrate the human's cost so that this fraction of steps is intervened (held takeovers counted)",
        (0.01, 0.99),
    ),
    Param(
        "min_takeover_steps",
        0,
        "keep each takeover for at least this many steps, as a person holding the button would (0: the preset's)",
        (0, 1000),
    ),
    Param(
        "timing",
        "",
        "when the human steps in and hands back: per_step, holding, waiting or holding_waiting ('': the preset's)",
        choices=("", "per_step", "holding", "waiting", "holding_waiting"),
    ),
    Param("hold_mean", 0.0, "a holding human's mean takeover length in steps (0: the preset's)", (0.0, 1000.0)),
    Param(
        "wait_steps",
        -1,
        "a waiting human's extra concerned checks before stepping in (-1: the preset's)",
        (-1, 1000),
    ),
    Param("refit_on_new_policy", True, "refit the mental model when the policy node reports a new checkpoint"),
    Param("seed", 0, "seed of the human's randomness (mental-model fit and calibration)", (0, 2**31 - 1)),
    Param(
        "episode_seed",
        -1,
        "reseed the human's draws with this at each reset, as offline (the session manager sets it to the "
        "episode's seed); -1: one stream across episodes",
        (-1, 2**31 - 1),
    ),
    Param("enabled", True, "intervene at all (false: publish an untouched gamepad, for evaluation)"),
    Param(
        "answer_steps",
        0,
        "steps the human drives when answering the robot's help request (0: the simulated human's default)",
        (0, 100000),
    ),
    Param(
        "free_intervention",
        True,
        "step in on their own as well as when asked (false: only answer the robot's help requests)",
    ),
)


class SimulatedHumanNode(Node):
    def __init__(self) -> None:
        super().__init__("simulated_human")
        p = declare_parameters(self, PARAMETERS)
        import torch

        # One observation at a time through a small MLP: extra threads only contend with the other nodes.
        torch.set_num_threads(1)
        if not p["checkpoint"]:
            raise ValueError("parameter 'checkpoint' is empty: the human needs the robot's policy for its mental model")
        from mile_ros.sim import make_env

        self.params = p
        self.mapping = load_joy_mapping(p["joy_mapping"])
        self.env = make_env(p["task"], seed=p["seed"])
        self.enabled = bool(p["enabled"])
        self.human = None
        self.fitted_for = ""
        self.busy = ""
        self.lock = threading.Lock()
        self.decisions = 0
        self.last_joy: Joy | None = None
        self.asked = False  # the robot's help request is open
        self.pub_joy = publisher(self, "teleop/joy")
        subscription(self, "mile/observation", self.on_observation)
        subscription(self, "mile/active_checkpoint", self.on_active_checkpoint)
        subscription(self, "mile/help_request", self.on_help_request)
        self.create_service(Trigger, "simulated_human/reset", self.on_reset)
        self.create_service(SetBool, "simulated_human/enable", self.on_enable)
        self.fit(p["checkpoint"])

    def fit(self, checkpoint: str) -> None:
        """Build (or rebuild) the human for ``checkpoint`` in a background thread."""
        from mile_ros.sim.human import make_simulated_human

        self.busy = checkpoint

        hold = int(self.params["min_takeover_steps"])
        overrides = {"min_takeover_steps": hold} if hold else {}  # 0: the task preset's value
        # '', 0 and -1: the task preset's value
        if self.params["timing"]:
            overrides["timing"] = str(self.params["timing"])
        if float(self.params["hold_mean"]) > 0:
            overrides["hold_mean"] = float(self.params["hold_mean"])
        if int(self.params["wait_steps"]) >= 0:
            overrides["wait_steps"] = int(self.params["wait_steps"])
        if int(self.params["answer_steps"]) > 0:
            overrides["answer_steps"] = int(self.params["answer_steps"])
        overrides["free_intervention"] = bool(self.params["free_intervention"])

        def work() -> None:
            try:
                human, fit = make_simulated_human(
                    self.params["task"],
                    checkpoint,
                    self.env,
                    seed=int(self.params["seed"]),
                    rollouts=int(self.params["mental_rollouts"]),
                    target_rate=float(self.params["target_intervention_rate"]),
                    **overrides,
                )
            except Exception as exc:
                self.get_logger().error(f"could not fit the mental model on {checkpoint}: {exc}")
                self.busy = ""
                return
            with self.lock:
                self.human, self.fitted_for = human, checkpoint
            self.busy = ""
            self.get_logger().info(
                f"mental model fit on {fit.rollouts} rollouts of {checkpoint} "
                f"(robot success {fit.robot_success_rate:.2f}, cost {human.cost:.3g})"
            )

        threading.Thread(target=work, name="mental-model-fit", daemon=True).start()

    def on_active_checkpoint(self, msg: String) -> None:
        if self.params["refit_on_new_policy"] and msg.data and msg.data not in (self.fitted_for, self.busy):
            self.fit(msg.data)

    def on_observation(self, msg) -> None:
        stamp = stamp_ns(msg)
        if self.last_joy is not None and stamp_ns(self.last_joy) == stamp:
            self.pub_joy.publish(self.last_joy)  # a resent observation: the same decision again
            return
        frame = np.asarray(msg.position, dtype=np.float32)
        intervene, action = False, None
        with self.lock:
            if self.enabled and self.human is not None:
                intervene, action = self.human.act(frame, asked=self.asked)
        axes, buttons = self.mapping.encode(
            action if intervene else np.zeros(len(self.mapping.actions)), ["takeover"] if intervene else []
        )
        joy = Joy(axes=axes, buttons=buttons)
        joy.header.stamp = to_time(stamp)
        self.pub_joy.publish(joy)
        self.last_joy = joy
        self.decisions += 1

    def on_help_request(self, msg: Bool) -> None:
        self.asked = bool(msg.data)

    def on_reset(self, request, response):
        with self.lock:
            if self.human is None or self.busy:
                response.success = False
                response.message = f"fitting the mental model on {self.busy or '?'}; try again"
                return response
            episode_seed = int(self.get_parameter("episode_seed").value)
            self.human.reset(episode_seed if episode_seed >= 0 else None)
            self.last_joy = None
        response.success, response.message = True, f"human ready (mental model of {self.fitted_for})"
        return response

    def on_enable(self, request, response):
        self.enabled = bool(request.data)
        response.success, response.message = True, "intervening" if self.enabled else "hands off"
        return response

    def close(self) -> None:
        self.env.close()


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(SimulatedHumanNode, args)


if __name__ == "__main__":
    sys.exit(main())
