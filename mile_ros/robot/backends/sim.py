"""A kinematic stand-in arm: the end effector goes where it is told (for node tests and demos)."""

from __future__ import annotations

import numpy as np

from .base import ArmBackend, ArmState

__all__ = ["SimBackend"]

JOINT_NAMES = ("ee_x", "ee_y", "ee_z", "gripper")


class SimBackend(ArmBackend):
    """Integrates commanded end-effector moves exactly; reports the pose as its 'joints'."""

    def __init__(self, home_position: tuple[float, float, float] = (0.3, 0.0, 0.2)) -> None:
        self.home_position = np.asarray(home_position, dtype=float)
        self.position = self.home_position.copy()
        self.gripper_closed = False
        self.torque = True
        self.moves = 0
        self.holds = 0

    def read_state(self) -> ArmState:
        joints = np.array([*self.position, 1.0 if self.gripper_closed else 0.0])
        return ArmState(JOINT_NAMES, joints, self.position.copy(), np.array([0.0, 0.0, 0.0, 1.0]),
                        self.gripper_closed)

    def move_to(self, position: np.ndarray) -> bool:
        if not self.torque:
            return False  # a limp arm does not move by itself
        self.position = np.asarray(position, dtype=float).copy()
        self.moves += 1
        return True

    def set_gripper(self, closed: bool) -> None:
        if self.torque:
            self.gripper_closed = closed

    def hold(self) -> None:
        self.holds += 1

    def home(self) -> None:
        self.position = self.home_position.copy()
        self.gripper_closed = False

    def sleep(self) -> None:
        self.position = self.home_position + np.array([-0.1, 0.0, -0.1])

    def set_torque(self, enabled: bool) -> None:
        self.torque = enabled
