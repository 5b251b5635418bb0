"""The safety layer in front of every arm backend.

Actions are ``[dx, dy, dz, gripper]`` in normalised units ``[-1, 1]``; ``max_step_m`` turns them into
metres. Each command is checked in this order:

1. e-stop latched -> refused (the arm holds until :meth:`SafetyLayer.clear_estop`);
2. NaN/inf, wrong length or a component outside ``[-1, 1]`` (beyond ``range_tolerance``) -> refused,
   with a log line naming the command's source;
3. the step is scaled to metres and its length clipped to ``max_motion_m`` (counted);
4. the target is clipped into the workspace box (counted).

A command older than ``command_timeout_s`` makes :meth:`SafetyLayer.timed_out` true: the caller holds the
arm until the next valid command arrives.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SafeCommand", "SafetyConfig", "SafetyError", "SafetyLayer"]

_log = logging.getLogger(__name__)


class SafetyError(ValueError):
    """A safety configuration that cannot be used."""


@dataclass(frozen=True)
class SafetyConfig:
    """Limits, in metres and seconds, in the arm's base frame."""

    workspace_min: tuple[float, float, float] = (0.15, -0.25, 0.04)
    workspace_max: tuple[float, float, float] = (0.45, 0.25, 0.35)
    max_step_m: float = 0.01  # metres per unit of normalised action, per axis
    max_motion_m: float = 0.015  # longest allowed step (Euclidean), metres
    command_timeout_s: float = 0.5
    range_tolerance: float = 1e-3  # float noise around +-1 is not "out of range"

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise SafetyError("workspace_min and workspace_max need 3 values each (x, y, z in metres)")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (lo >= hi).any():
            raise SafetyError(f"workspace box is empty or not finite: min={lo.tolist()} max={hi.tolist()}")
        for name in ("max_step_m", "max_motion_m", "command_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SafetyError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class SafeCommand:
    """A checked command: where the end effector goes and what the gripper does."""

    target: np.ndarray  # (3,) metres, inside the workspace
    delta: np.ndarray  # (3,) metres actually applied (target - current)
    gripper: float  # normalised, in [-1, 1]; > 0 closes (Metaworld's convention)
    clipped_motion: bool
    clipped_workspace: bool


@dataclass
class SafetyCounters:
    """How often each rule fired since start-up (published by the driver)."""

    accepted: int = 0
    clipped_motion: int = 0
    clipped_workspace: int = 0
    refused_invalid: int = 0
    refused_estop: int = 0
    timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class SafetyLayer:
    """Checks commands against :class:`SafetyConfig`; latches the e-stop; tracks the command timeout."""

    config: SafetyConfig = field(default_factory=SafetyConfig)
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = _log.warning
    counters: SafetyCounters = field(default_factory=SafetyCounters)

    def __post_init__(self) -> None:
        self._estop_reason: str | None = None
        self._last_command_time: float | None = None
        self._timeout_reported = False
        self._lo = np.asarray(self.config.workspace_min, dtype=float)
        self._hi = np.asarray(self.config.workspace_max, dtype=float)

    # -- e-stop ---------------------------------------------------------------------------------
    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    @property
    def estop_reason(self) -> str | None:
        return self._estop_reason

    def estop(self, reason: str) -> None:
        """Latch the e-stop; only :meth:`clear_estop` releases it."""
        if self._estop_reason is None:
            self.log(f"E-STOP latched: {reason}")
            self._estop_reason = reason

    def clear_estop(self) -> bool:
        """Release the e-stop; returns whether it was latched. Stale commands stay stale."""
        was = self._estop_reason is not None
        if was:
            self.log(f"e-stop cleared (was: {self._estop_reason})")
        self._estop_reason = None
        self._last_command_time = None  # the arm holds until a fresh command arrives
        return was

    # -- timeout --------------------------------------------------------------------------------
    def timed_out(self) -> bool:
        """True when no valid command arrived within ``command_timeout_s`` (or none yet)."""
        if self._last_command_time is None:
            return True
        late = self.clock() - self._last_command_time > self.config.command_timeout_s
        if late and not self._timeout_reported:
            self.counters.timeouts += 1
            self._timeout_reported = True
            self.log(f"no command for {self.config.command_timeout_s:.2f} s: holding the arm")
        return late

    # -- commands -------------------------------------------------------------------------------
    def check(self, action: Sequence[float], current: Sequence[float], source: str) -> SafeCommand | None:
        """The safe version of ``action`` from end-effector position ``current``, or None if refused."""
        if self.estopped:
            self.counters.refused_estop += 1
            return None
        values = np.asarray(action, dtype=float).reshape(-1)
        problem = self._invalid(values)
        if problem is not None:
            self.counters.refused_invalid += 1
            self.log(f"refused command from {source}: {problem}")
            return None
        position = np.asarray(current, dtype=float).reshape(-1)
        if position.shape != (3,) or not np.isfinite(position).all():
            self.counters.refused_invalid += 1
            self.log(f"refused command from {source}: end-effector position unknown ({position.tolist()})")
            return None

        values = np.clip(values, -1.0, 1.0)  # within tolerance: only float noise is removed
        delta = values[:3] * self.config.max_step_m
        length = float(np.linalg.norm(delta))
        clipped_motion = length > self.config.max_motion_m
        if clipped_motion:
            delta *= self.config.max_motion_m / length
            self.counters.clipped_motion += 1
        wanted = position + delta
        target = np.clip(wanted, self._lo, self._hi)
        clipped_workspace = bool((target != wanted).any())
        if clipped_workspace:
            self.counters.clipped_workspace += 1
        self.counters.accepted += 1
        self._last_command_time = self.clock()
        self._timeout_reported = False
        return SafeCommand(target, target - position, float(values[3]), clipped_motion, clipped_workspace)

    def _invalid(self, values: np.ndarray) -> str | None:
        if values.shape != (4,):
            return f"expected 4 values [dx, dy, dz, gripper], got {values.shape[0]}"
        if not np.isfinite(values).all():
            return f"non-finite values {values.tolist()}"
        limit = 1.0 + self.config.range_tolerance
        if (np.abs(values) > limit).any():
            return f"values {np.round(values, 4).tolist()} outside [-1, 1]"
        return None
