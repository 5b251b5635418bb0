"""The WidowX through interbotix's Python API (``interbotix_xs_modules``): the arm or interbotix's simulated SDK.

Assumed API (interbotix_ros_toolboxes, ROS 2 Humble/Jazzy branch; checked against its source, not
against a robot):

- ``InterbotixManipulatorXS(robot_model, group_name, gripper_name, moving_time=, accel_time=)``;
  newer releases also need ``interbotix_common_modules.common_robot.robot.robot_startup()`` after
  construction (called when that module exists).
- ``bot.arm.set_ee_pose_components(x, y, z, roll, pitch, yaw=None, custom_guess=joints, execute=True,
  moving_time=, accel_time=, blocking=False) -> (joints, ok)``; with ``yaw=None`` a 6-DoF arm points
  the gripper along ``atan2(y, x)``.
- ``bot.arm.set_joint_positions(joints, moving_time=, accel_time=, blocking=False) -> bool``,
  ``go_to_home_pose(blocking=True)``, ``go_to_sleep_pose(blocking=True)``.
- ``bot.arm.group_info.joint_names``, ``bot.arm.robot_des.M`` / ``.Slist`` (space-frame screws),
  ``bot.core.joint_states`` (sensor_msgs/JointState), ``bot.core.js_index_map``, ``bot.core.js_mutex``.
- ``bot.gripper.grasp(delay)`` / ``bot.gripper.release(delay)``;
  ``bot.core.robot_torque_enable(cmd_type, name, enable)``.

Everything around those calls (state conversion, forward kinematics, command building, limits) is
tested with an in-process stand-in object; the calls themselves run only with interbotix installed.
Also untested: interbotix's node lives in the driver's process, in the rclpy context the driver has
already initialised (older releases that call ``rclpy.init`` themselves would need it to be theirs).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from .base import ArmBackend, ArmState, RobotLibraryMissingError

__all__ = ["InterbotixBackend", "fk_space", "quaternion_from_matrix"]

INSTALL_HINT = (
    "the interbotix Python API (interbotix_xs_modules) is not installed. On the robot computer install "
    "Interbotix's ROS 2 packages (https://docs.trossenrobotics.com/interbotix_xsarms_docs/ -> 'ROS 2 "
    "Interface' -> software setup: xsarm_amd64_install.sh -d <distro>), source its workspace "
    "(source ~/interbotix_ws/install/setup.bash) and start the arm driver with "
    "'ros2 launch interbotix_xsarm_control xsarm_control.launch.py robot_model:=wx250s' "
    "(add use_sim:=true for interbotix's simulated SDK). "
    "Use backend:=sim to run without it."
)


def _skew(w: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _screw_exp(screw: np.ndarray, theta: float) -> np.ndarray:
    """exp([S] theta) for a unit screw S = (w, v) (revolute |w| = 1, prismatic w = 0)."""
    w, v = screw[:3], screw[3:]
    T = np.eye(4)
    if np.linalg.norm(w) < 1e-12:
        T[:3, 3] = v * theta
        return T
    W = _skew(w)
    R = np.eye(3) + math.sin(theta) * W + (1 - math.cos(theta)) * W @ W
    G = np.eye(3) * theta + (1 - math.cos(theta)) * W + (theta - math.sin(theta)) * W @ W
    T[:3, :3] = R
    T[:3, 3] = G @ v
    return T


def fk_space(M: np.ndarray, Slist: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """Forward kinematics by the product of exponentials: ``e^[S1]t1 ... e^[Sn]tn M`` (columns of Slist)."""
    Slist = np.asarray(Slist, dtype=float)
    thetas = np.asarray(thetas, dtype=float).reshape(-1)
    if Slist.shape != (6, thetas.shape[0]):
        raise ValueError(f"Slist has shape {Slist.shape}, expected (6, {thetas.shape[0]})")
    T = np.eye(4)
    for i, theta in enumerate(thetas):
        T = T @ _screw_exp(Slist[:, i], float(theta))
    return T @ np.asarray(M, dtype=float)


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a rotation matrix, w >= 0."""
    R = np.asarray(R, dtype=float)
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    quat = np.asarray(q)
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


def _connect(robot_model: str, group_name: str, gripper_name: str, moving_time: float,
             accel_time: float) -> Any:
    try:
        from interbotix_xs_modules.xs_robot.arm import InterbotixManipulatorXS
    except ImportError as exc:
        raise RobotLibraryMissingError(INSTALL_HINT) from exc
    bot = InterbotixManipulatorXS(robot_model=robot_model, group_name=group_name, gripper_name=gripper_name,
                                  moving_time=moving_time, accel_time=accel_time)
    try:  # releases from 2023 on need an explicit start-up; older ones spin on construction
        from interbotix_common_modules.common_robot.robot import robot_startup
    except ImportError:
        return bot
    robot_startup()
    return bot


class InterbotixBackend(ArmBackend):
    """Short end-effector moves by inverse kinematics seeded from the measured joints."""

    def __init__(
        self,
        robot_model: str = "wx250s",
        group_name: str = "arm",
        gripper_name: str = "gripper",
        moving_time: float = 0.2,
        accel_time: float = 0.1,
        roll: float = 0.0,
        pitch: float = 1.0,
        yaw: float | None = None,
        gripper_delay: float = 0.0,
        bot: Any = None,
    ) -> None:
        """``bot`` is an already built ``InterbotixManipulatorXS`` (or a stand-in); None connects."""
        if not 0 < 2 * accel_time <= moving_time:
            raise ValueError(f"need 0 < 2*accel_time <= moving_time, got {accel_time=} {moving_time=}")
        self.group_name, self.gripper_name = group_name, gripper_name
        self.moving_time, self.accel_time = moving_time, accel_time
        self.roll, self.pitch, self.yaw = roll, pitch, yaw
        self.gripper_delay = gripper_delay
        self.bot = bot if bot is not None else _connect(robot_model, group_name, gripper_name, moving_time,
                                                        accel_time)
        self.joint_names = tuple(self.bot.arm.group_info.joint_names)
        self._gripper_closed = False

    # -- state ----------------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        """Measured arm joint positions (rad), in the group's joint order."""
        core = self.bot.core
        lock = getattr(core, "js_mutex", None) or contextlib.nullcontext()
        with lock:
            states = core.joint_states
            if states is None:
                raise RuntimeError("no joint states from interbotix yet: is xsarm_control running?")
            positions = [states.position[core.js_index_map[name]] for name in self.joint_names]
        return np.asarray(positions, dtype=float)

    def read_state(self) -> ArmState:
        joints = self.joint_positions()
        T = fk_space(self.bot.arm.robot_des.M, self.bot.arm.robot_des.Slist, joints)
        return ArmState(self.joint_names, joints, T[:3, 3].copy(), quaternion_from_matrix(T[:3, :3]),
                        self._gripper_closed)

    # -- commands -------------------------------------------------------------------------------
    def pose_command(self, position: np.ndarray, seed: np.ndarray) -> dict[str, Any]:
        """Keyword arguments for ``set_ee_pose_components`` that move to ``position`` without blocking."""
        x, y, z = (float(v) for v in position)
        return dict(x=x, y=y, z=z, roll=self.roll, pitch=self.pitch, yaw=self.yaw,
                    custom_guess=[float(v) for v in seed], execute=True,
                    moving_time=self.moving_time, accel_time=self.accel_time, blocking=False)

    def move_to(self, position: np.ndarray) -> bool:
        seed = self.joint_positions()
        _, ok = self.bot.arm.set_ee_pose_components(**self.pose_command(position, seed))
        return bool(ok)

    def set_gripper(self, closed: bool) -> None:
        if closed:
            self.bot.gripper.grasp(self.gripper_delay)
        else:
            self.bot.gripper.release(self.gripper_delay)
        self._gripper_closed = closed

    def hold(self) -> None:
        # Commanding the measured joints cancels the rest of the move in progress.
        self.bot.arm.set_joint_positions([float(v) for v in self.joint_positions()],
                                         moving_time=self.moving_time, accel_time=self.accel_time,
                                         blocking=False)

    def home(self) -> None:
        self.bot.arm.go_to_home_pose(blocking=True)
        self.set_gripper(False)

    def sleep(self) -> None:
        self.bot.arm.go_to_sleep_pose(blocking=True)

    def set_torque(self, enabled: bool) -> None:
        self.bot.core.robot_torque_enable("group", self.group_name, enabled)
        if self.gripper_name:
            self.bot.core.robot_torque_enable("single", self.gripper_name, enabled)

    def close(self) -> None:
        try:  # releases from 2023 on: the global start-up has its shutdown
            from interbotix_common_modules.common_robot.robot import robot_shutdown
        except ImportError:
            shutdown = getattr(self.bot, "shutdown", None)
            if callable(shutdown):
                shutdown()
            return
        robot_shutdown()
