"""What every arm backend provides, and the state it reports."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

__all__ = ["ArmBackend", "ArmState", "RobotLibraryMissingError"]


class RobotLibraryMissingError(ImportError):
    """The robot's Python library is not installed; the message says what to install."""


@dataclass(frozen=True)
class ArmState:
    """One reading of the arm."""

    joint_names: tuple[str, ...]
    joint_positions: np.ndarray  # rad (or metres for prismatic joints)
    ee_position: np.ndarray  # (3,) metres, base frame
    ee_orientation: np.ndarray  # (4,) quaternion x, y, z, w
    gripper_closed: bool


class ArmBackend(ABC):
    """An arm that takes short end-effector moves; used only through :class:`~mile_ros.robot.arm.SafeArm`."""

    @abstractmethod
    def read_state(self) -> ArmState:
        """The arm's current state."""

    @abstractmethod
    def move_to(self, position: np.ndarray) -> bool:
        """Start a short, non-blocking move of the end effector to ``position`` (metres); False if refused."""

    @abstractmethod
    def set_gripper(self, closed: bool) -> None:
        """Close or open the gripper (called only when the wanted state changes)."""

    @abstractmethod
    def hold(self) -> None:
        """Stop where the arm is now."""

    @abstractmethod
    def home(self) -> None:
        """Go to the home pose and open the gripper (blocking)."""

    @abstractmethod
    def sleep(self) -> None:
        """Go to the sleep (rest) pose (blocking)."""

    @abstractmethod
    def set_torque(self, enabled: bool) -> None:
        """Switch the motors' torque on or off."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the hardware."""
