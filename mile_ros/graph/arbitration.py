"""Arbitration between the policy's proposal and the human's gamepad: takeover, watchdog, handover.

Rules (docs/interfaces.md, arbitration_node):

- The human intervenes while holding the takeover button on a *fresh* Joy message; the executed
  command is then the human's action (``source = human``, ``I = 1``).
- Otherwise a fresh proposal is executed (``source = robot``).
- Neither fresh (the watchdog) -> ``hold``: zero motion, the gripper kept where it was (opening it
  could drop an object). A human who holds the takeover but whose pad goes silent also gets ``hold``.
- A robot that asks for help (:mod:`mile_ros.graph.asking`) holds too while its request is open and
  the human has not taken over (``command(..., hold=True)``).
- At every change of source the command is rate-limited: each component moves by at most
  ``max_jump`` per command until it reaches the new source's action, so the arm never jerks at a
  handover. ``hold`` itself is applied at once: stopping is the safe direction.

Freshness is judged on a monotonic wall clock (``now`` arguments), never on message stamps, so the
watchdog works under ``use_sim_time`` while simulated time stands still.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .joy_mapping import JoyMapping, JoyMappingError
from .topics import SOURCE_HOLD, SOURCE_HUMAN, SOURCE_ROBOT

__all__ = ["Arbiter", "ArbitrationConfig", "Command", "hold_action"]


@dataclass(frozen=True)
class ArbitrationConfig:
    watchdog_timeout: float = 0.5  # s without a fresh proposal (or teleop, when intervening) -> hold
    max_jump: float = 0.25  # largest change of any component between two commands after a switch
    gripper_index: int = 3

    def __post_init__(self) -> None:
        if self.watchdog_timeout <= 0:
            raise ValueError(f"watchdog_timeout must be positive, got {self.watchdog_timeout}")
        if not 0 < self.max_jump <= 2:
            raise ValueError(f"max_jump must lie in (0, 2], got {self.max_jump}")


def hold_action(last: np.ndarray, gripper_index: int) -> np.ndarray:
    """The ``hold`` command after ``last``: no motion, the gripper (when in range) kept where it was."""
    last = np.asarray(last, dtype=np.float64).reshape(-1)
    out = np.zeros(len(last))
    if 0 <= gripper_index < len(last):
        out[gripper_index] = last[gripper_index]
    return out


@dataclass
class Command:
    stamp_ns: int  # the stamp of the observation this command answers
    action: np.ndarray  # executed (after handover smoothing)
    source: str  # robot | human | hold
    human_action: np.ndarray | None  # the human's own action when intervening
    robot_action: np.ndarray | None  # the proposal it answers, if any

    @property
    def intervention(self) -> bool:
        return self.source == SOURCE_HUMAN


class Arbiter:
    """The state machine; feed it proposals and Joy messages, ask it for commands."""

    def __init__(self, mapping: JoyMapping, config: ArbitrationConfig | None = None, act_dim: int = 4) -> None:
        self.mapping = mapping
        self.config = config or ArbitrationConfig()
        self.act_dim = act_dim
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new episode): the next command starts from rest."""
        self.proposal: np.ndarray | None = None
        self.proposal_stamp = -1
        self.proposal_time = -np.inf
        self.joy_action: np.ndarray | None = None
        self.joy_takeover = False
        self.joy_stamp = -1
        self.joy_time = -np.inf
        self.last_output = np.zeros(self.act_dim)
        self.last_source = SOURCE_HOLD
        self.blending = False
        self.errors = 0

    # ---- inputs -----------------------------------------------------------------------------

    def on_proposal(self, stamp_ns: int, action: np.ndarray, now: float) -> None:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape[0] != self.act_dim or not np.isfinite(action).all():
            raise ValueError(f"proposal must be {self.act_dim} finite values, got {action}")
        self.proposal, self.proposal_stamp, self.proposal_time = np.clip(action, -1, 1), stamp_ns, now

    def on_joy(self, stamp_ns: int, axes: list[float], buttons: list[int], now: float) -> None:
        """Read one Joy message; a malformed one raises JoyMappingError and is not used."""
        action = self.mapping.action(axes)
        takeover = self.mapping.pressed(buttons, "takeover")
        self.joy_action, self.joy_takeover, self.joy_stamp, self.joy_time = action, takeover, stamp_ns, now

    # ---- outputs ----------------------------------------------------------------------------

    def proposal_fresh(self, now: float) -> bool:
        return self.proposal is not None and now - self.proposal_time <= self.config.watchdog_timeout

    def joy_fresh(self, now: float) -> bool:
        return self.joy_action is not None and now - self.joy_time <= self.config.watchdog_timeout

    def has_joy_for(self, stamp_ns: int) -> bool:
        """True once a Joy message stamped at or after ``stamp_ns`` arrived (lockstep mode)."""
        return self.joy_stamp >= stamp_ns

    def human_active(self, now: float) -> bool:
        """The human holds the takeover on a fresh Joy message: a command now is theirs."""
        return self.joy_takeover and self.joy_fresh(now)

    def command(self, now: float, stamp_ns: int | None = None, hold: bool = False) -> Command:
        """The command to execute now; ``stamp_ns`` defaults to the latest proposal's stamp.

        ``hold``: the robot may not drive (it asked for help): ``hold`` unless the human drives.
        """
        stamp = self.proposal_stamp if stamp_ns is None else stamp_ns
        human = self.human_active(now)
        robot = self.proposal if self.proposal_fresh(now) else None
        if human:
            source, target = SOURCE_HUMAN, self.joy_action.copy()
        elif self.joy_takeover and not self.joy_fresh(now) and self.joy_action is not None:
            source, target = SOURCE_HOLD, None  # the human was driving and the pad fell silent
        elif robot is not None and not hold:
            source, target = SOURCE_ROBOT, robot.copy()
        else:
            source, target = SOURCE_HOLD, None
        if source == SOURCE_HOLD:
            out = hold_action(self.last_output, self.config.gripper_index)
            self.blending = True  # leaving hold is a switch too
        else:
            if source != self.last_source:
                self.blending = True
            out = target
            if self.blending:
                step = np.clip(target - self.last_output, -self.config.max_jump, self.config.max_jump)
                out = self.last_output + step
                self.blending = not np.allclose(out, target, atol=1e-12)
        self.last_output, self.last_source = out, source
        return Command(
            stamp,
            out.copy(),
            source,
            self.joy_action.copy() if source == SOURCE_HUMAN else None,
            robot.copy() if robot is not None else None,
        )


def safe_on_joy(arbiter: Arbiter, stamp_ns: int, axes: list[float], buttons: list[int], now: float) -> str | None:
    """:meth:`Arbiter.on_joy` that returns the error text instead of raising (the node logs it)."""
    try:
        arbiter.on_joy(stamp_ns, axes, buttons, now)
    except JoyMappingError as exc:
        arbiter.errors += 1
        return str(exc)
    return None
