"""An arm backend behind the safety layer: the only way the driver node moves the arm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .backends.base import ArmBackend, ArmState
from .safety import SafeCommand, SafetyLayer

__all__ = ["GripperLatch", "SafeArm"]


@dataclass
class GripperLatch:
    """Continuous gripper action -> open/close, with hysteresis so noise near 0 does not chatter."""

    close_above: float = 0.2
    open_below: float = -0.2
    closed: bool = False

    def update(self, value: float) -> bool | None:
        """The new state when it changes, else None."""
        if value > self.close_above and not self.closed:
            self.closed = True
            return True
        if value < self.open_below and self.closed:
            self.closed = False
            return False
        return None


class SafeArm:
    """Applies checked commands to a backend; holds on timeout, refusal and e-stop."""

    def __init__(self, backend: ArmBackend, safety: SafetyLayer, gripper: GripperLatch | None = None) -> None:
        self.backend, self.safety = backend, safety
        self.gripper = gripper or GripperLatch()
        self.holding = True  # nothing commanded yet
        self.last_command: SafeCommand | None = None
        self.failed_moves = 0

    def state(self) -> ArmState:
        return self.backend.read_state()

    def step(self, action: Sequence[float], source: str) -> SafeCommand | None:
        """Check and apply one action; on refusal the arm holds. Returns what was applied."""
        current = self.backend.read_state().ee_position
        command = self.safety.check(action, current, source)
        self.last_command = command
        if command is None:
            self._hold()
            return None
        if not self.backend.move_to(command.target):
            self.failed_moves += 1
            where = command.target.round(4).tolist()
            self.safety.log(f"backend could not reach {where} (from {source}); holding")
            self._hold()
            return command
        self.holding = False
        change = self.gripper.update(command.gripper)
        if change is not None:
            self.backend.set_gripper(change)
        return command

    def hold(self) -> None:
        """Stop now (an explicit 'hold' command from arbitration)."""
        self._hold()

    def tick(self) -> bool:
        """Call periodically: holds the arm once the command timeout passes. Returns whether holding."""
        if self.safety.timed_out() and not self.holding:
            self._hold()
        return self.holding

    def estop(self, reason: str) -> None:
        self.safety.estop(reason)
        self._hold()

    def clear_estop(self) -> bool:
        return self.safety.clear_estop()

    def home(self) -> None:
        """Go home (refused while the e-stop is latched)."""
        if self.safety.estopped:
            raise PermissionError(f"e-stop latched ({self.safety.estop_reason}); clear it before homing")
        self.backend.home()
        self.gripper.closed = False
        self.holding = True

    def set_torque(self, enabled: bool) -> None:
        self.backend.set_torque(enabled)
        if not enabled:
            self.holding = True

    def _hold(self) -> None:
        if not self.holding:
            self.backend.hold()
        self.holding = True
