"""A robot that asks for help: the decision rule, ROS-free (docs/learning.md, "Asking for help").

The policy's intervention model predicts ``P(I=1|s)``, how likely the human is to take over here.
With a threshold set, the robot asks when the prediction rises above it:

- **start**: ``p > threshold`` on a step the robot drives (the human is not in control, no request is
  open, the cool-down is over): a request opens and the robot holds (arbitration's ``hold``: no
  motion, the gripper kept) on this step and every step the request stays open;
- **answered**: the human takes over; the request closes (the human drives);
- **timeout**: nobody answered for ``timeout_steps`` held steps; the request closes and the robot
  resumes its own actions at once;
- **cool-down**: after a request closes, the next one may open only after the robot has driven
  ``cooldown_steps`` more steps itself (steps the human drives do not count), so a robot whose
  prediction stays high does not ask every step.

One :meth:`HelpRequester.step` per control step, with the latest prediction (None: none, e.g. a
policy without an intervention model, which never asks).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = ["EVENTS", "AskConfig", "AskStep", "HelpRequester"]

# What a step did to the request: nothing, opened it, closed it by a takeover, closed it unanswered.
EVENTS = ("", "start", "answered", "timeout")


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be a whole number of at least {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class AskConfig:
    """When to ask: above ``threshold``; give up after ``timeout_steps`` held steps; then drive
    ``cooldown_steps`` steps before asking again."""

    threshold: float
    timeout_steps: int = 20
    cooldown_steps: int = 10

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (math.isfinite(t) and 0.0 < t < 1.0):
            raise ValueError(f"ask threshold must be a probability in (0, 1), got {t!r}")
        _whole("ask_timeout_steps", self.timeout_steps, 1)
        _whole("ask_cooldown_steps", self.cooldown_steps, 0)


@dataclass(frozen=True)
class AskStep:
    """One step's outcome: ``asking`` (a request is open: hold the robot) and the ``event``."""

    asking: bool
    event: str = ""


class HelpRequester:
    """The state machine of help requests; counts what it did (``requests``, ``answered``,
    ``timed_out``, ``held_steps``) until :meth:`reset_counts`."""

    def __init__(self, config: AskConfig) -> None:
        self.config = config
        self.reset()
        self.reset_counts()

    def reset(self) -> None:
        """A new episode: no open request, no cool-down (the counts are kept)."""
        self.asking = False
        self.waited = 0  # held steps of the open request
        self.cooldown_left = 0

    def reset_counts(self) -> None:
        self.requests = self.answered = self.timed_out = self.held_steps = 0

    def step(self, p: float | None, human_in_control: bool) -> AskStep:
        """One control step: ``p`` the latest predicted ``P(I=1|s)`` (None or NaN: no prediction),
        ``human_in_control`` whether the human drives this step. Returns whether the robot holds."""
        if self.asking:
            if human_in_control:
                return self._close("answered")
            if self.waited >= self.config.timeout_steps:
                return self._close("timeout")
            self.waited += 1
            self.held_steps += 1
            return AskStep(True)
        if human_in_control:
            return AskStep(False)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return AskStep(False)
        if p is not None and math.isfinite(p) and p > self.config.threshold:
            self.asking, self.waited = True, 1
            self.requests += 1
            self.held_steps += 1
            return AskStep(True, "start")
        return AskStep(False)

    def _close(self, event: str) -> AskStep:
        self.asking, self.waited = False, 0
        self.cooldown_left = self.config.cooldown_steps
        if event == "answered":
            self.answered += 1
        else:
            self.timed_out += 1
        return AskStep(False, event)
