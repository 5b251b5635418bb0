"""The arm path: safety layer on every backend (clipping, step limits, timeout hold, e-stop latch, NaN
refusal) and the interbotix backend around the library call.

The interbotix library is not installable here, so ``InterbotixStandIn`` stands in for
``InterbotixManipulatorXS`` at the library boundary: three prismatic joints along x, y, z from a home
point, so inverse kinematics is exact and the backend's forward kinematics, seeding and command building
can be checked end to end.
"""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from mile_ros.robot.arm import GripperLatch, SafeArm
from mile_ros.robot.backends import make_backend
from mile_ros.robot.safety import SafetyConfig, SafetyError, SafetyLayer


class _Arm:
    def __init__(self, core, home) -> None:
        self.core = core
        self.group_info = SimpleNamespace(joint_names=["px", "py", "pz"], num_joints=3)
        M = np.eye(4)
        M[:3, 3] = home
        Slist = np.zeros((6, 3))
        Slist[3:, :] = np.eye(3)  # prismatic: w = 0, v = unit axis
        self.robot_des = SimpleNamespace(M=M, Slist=Slist)
        self.home = np.asarray(home, dtype=float)
        self.pose_calls: list[dict] = []
        self.joint_commands_sent: list[list[float]] = []
        self.homed = self.slept = 0

    def set_ee_pose_components(self, x=0, y=0, z=0, roll=0, pitch=0, yaw=None, custom_guess=None,
                               execute=True, moving_time=None, accel_time=None, blocking=True):
        self.pose_calls.append(dict(x=x, y=y, z=z, roll=roll, pitch=pitch, yaw=yaw, custom_guess=custom_guess,
                                    execute=execute, moving_time=moving_time, accel_time=accel_time,
                                    blocking=blocking))
        joints = np.array([x, y, z]) - self.home
        if execute:
            self.core.set_positions(joints)
        return list(joints), True

    def set_joint_positions(self, joint_positions, moving_time=None, accel_time=None, blocking=True):
        self.joint_commands_sent.append(list(joint_positions))
        self.core.set_positions(joint_positions)
        return True

    def go_to_home_pose(self, moving_time=None, accel_time=None, blocking=True):
        self.homed += 1
        self.core.set_positions([0.0, 0.0, 0.0])

    def go_to_sleep_pose(self, moving_time=None, accel_time=None, blocking=True):
        self.slept += 1
        self.core.set_positions([-0.1, 0.0, -0.1])


class _Core:
    def __init__(self) -> None:
        self.js_mutex = threading.Lock()
        self.js_index_map = {"gripper": 0, "px": 1, "py": 2, "pz": 3}  # not in group order on purpose
        self.joint_states = SimpleNamespace(name=["gripper", "px", "py", "pz"], position=[0.0, 0.0, 0.0, 0.0])
        self.torque_calls: list[tuple] = []

    def set_positions(self, joints) -> None:
        with self.js_mutex:
            self.joint_states.position = [self.joint_states.position[0], *map(float, joints)]

    def robot_torque_enable(self, cmd_type, name, enable):
        self.torque_calls.append((cmd_type, name, enable))


class _Gripper:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def grasp(self, delay=1.0):
        self.calls.append(("grasp", delay))

    def release(self, delay=1.0):
        self.calls.append(("release", delay))


class InterbotixStandIn:
    """Only what :class:`~mile_ros.robot.backends.interbotix.InterbotixBackend` touches."""

    def __init__(self, home=(0.3, 0.0, 0.2)) -> None:
        self.core = _Core()
        self.arm = _Arm(self.core, home)
        self.gripper = _Gripper()
        self.shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def build(backend_name: str, **config):
    clock, logs = FakeClock(), []
    cfg = SafetyConfig(**{"workspace_min": (0.1, -0.2, 0.05), "workspace_max": (0.4, 0.2, 0.3),
                          "max_step_m": 0.01, "max_motion_m": 0.015, "command_timeout_s": 0.5, **config})
    safety = SafetyLayer(cfg, clock=clock, log=logs.append)
    if backend_name == "sim":
        backend = make_backend("sim", home_position=(0.3, 0.0, 0.2))
    else:
        backend = make_backend("interbotix", bot=InterbotixStandIn(home=(0.3, 0.0, 0.2)))
    return SafeArm(backend, safety), clock, logs


BACKENDS = ["sim", "interbotix"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_scales_to_metres(backend):
    arm, _, _ = build(backend)
    cmd = arm.step([0.5, -1.0, 0.0, 0.0], source="test")
    assert cmd is not None and not cmd.clipped_motion and not cmd.clipped_workspace
    np.testing.assert_allclose(arm.state().ee_position, [0.305, -0.01, 0.2], atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_motion_limit_clips_and_counts(backend):
    arm, _, _ = build(backend)
    cmd = arm.step([1.0, 1.0, 1.0, 0.0], source="test")  # sqrt(3)*1 cm > 1.5 cm
    assert cmd.clipped_motion
    assert np.linalg.norm(cmd.delta) == pytest.approx(0.015)
    np.testing.assert_allclose(cmd.delta, np.full(3, 0.015 / math.sqrt(3)))
    np.testing.assert_allclose(arm.state().ee_position, np.array([0.3, 0.0, 0.2]) + cmd.delta, atol=1e-9)
    assert arm.safety.counters.clipped_motion == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_workspace_clips_and_counts(backend):
    arm, _, _ = build(backend, workspace_max=(0.4, 0.2, 0.295))
    for _ in range(20):  # 20 cm upwards from z = 0.2
        arm.step([0.0, 0.0, 1.0, 0.0], source="test")
    assert arm.state().ee_position[2] == pytest.approx(0.295)
    assert arm.safety.counters.clipped_workspace == 11  # steps 10..20 would pass the ceiling
    assert arm.safety.counters.accepted == 20


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [[math.nan, 0, 0, 0], [0, math.inf, 0, 0], [0, 0, 1.5, 0], [0, 0, 0, -2.0],
                                 [0.1, 0.1, 0.1]])
def test_invalid_commands_refused_with_source(backend, bad):
    arm, _, logs = build(backend)
    arm.step([0.5, 0, 0, 0], source="warmup")
    before = arm.state().ee_position.copy()
    assert arm.step(bad, source="/mile/executed_action (human)") is None
    np.testing.assert_array_equal(arm.state().ee_position, before)
    assert arm.holding
    assert arm.safety.counters.refused_invalid == 1
    assert any("/mile/executed_action (human)" in line and "refused" in line for line in logs)


def test_float_noise_at_the_bound_is_accepted():
    arm, _, _ = build("sim")
    assert arm.step([1.0000001, -1.0, 0.0, 1.0], source="test") is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_holds_once(backend):
    arm, clock, logs = build(backend)
    arm.step([0.2, 0, 0, 0], source="test")
    assert not arm.tick()
    clock.now += 0.4
    assert not arm.tick()
    clock.now += 0.2
    assert arm.tick()
    assert arm.tick()
    assert arm.safety.counters.timeouts == 1
    assert sum("holding" in line for line in logs) == 1
    holds = arm.backend.holds if backend == "sim" else len(arm.backend.bot.arm.joint_commands_sent)
    assert holds == 1
    arm.step([0.2, 0, 0, 0], source="test")  # a fresh command resumes
    assert not arm.tick()


@pytest.mark.parametrize("backend", BACKENDS)
def test_estop_latches_until_cleared(backend):
    arm, clock, _ = build(backend)
    arm.step([0.5, 0, 0, 0], source="test")
    arm.estop("operator pressed e-stop")
    where = arm.state().ee_position.copy()
    for _ in range(5):
        clock.now += 0.1
        assert arm.step([1.0, 0, 0, 0], source="test") is None
    np.testing.assert_array_equal(arm.state().ee_position, where)
    assert arm.safety.counters.refused_estop == 5
    with pytest.raises(PermissionError, match="e-stop latched"):
        arm.home()
    assert arm.clear_estop()
    assert arm.tick()  # cleared, but holding until a fresh command
    assert arm.step([1.0, 0, 0, 0], source="test") is not None
    assert arm.state().ee_position[0] == pytest.approx(where[0] + 0.01)
    assert not arm.clear_estop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gripper_hysteresis(backend):
    arm, _, _ = build(backend)
    for value, closed in [(0.1, False), (0.5, True), (0.0, True), (-0.1, True), (-0.5, False), (0.15, False)]:
        arm.step([0, 0, 0, value], source="test")
        assert arm.state().gripper_closed is closed


def test_gripper_latch_reports_changes_only():
    latch = GripperLatch()
    assert [latch.update(v) for v in (0.9, 0.9, -0.9, -0.9, 0.9)] == [True, None, False, None, True]


@pytest.mark.parametrize("kwargs", [
    {"workspace_min": (0.4, 0, 0), "workspace_max": (0.1, 1, 1)},
    {"workspace_min": (0, 0), "workspace_max": (1, 1)},
    {"max_step_m": 0.0},
    {"command_timeout_s": math.nan},
])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(SafetyError):
        SafetyConfig(**kwargs)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown arm backend"):
        make_backend("ur5")


# -- the interbotix backend around the library call -------------------------------------------------

def test_fk_revolute_by_hand():
    from mile_ros.robot.backends.interbotix import fk_space, quaternion_from_matrix

    M = np.eye(4)
    M[:3, 3] = [0.3, 0.0, 0.2]
    # joint 1: about z through the origin; joint 2: about y through (0, 0, 0.1): v = -w x q
    w2, q2 = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.1])
    Slist = np.column_stack([[0, 0, 1, 0, 0, 0], np.concatenate([w2, -np.cross(w2, q2)])])
    T = fk_space(M, Slist, [math.pi / 2, 0.0])
    np.testing.assert_allclose(T[:3, 3], [0.0, 0.3, 0.2], atol=1e-12)
    quarter_turn_z = [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)]
    np.testing.assert_allclose(quaternion_from_matrix(T[:3, :3]), quarter_turn_z, atol=1e-12)
    theta = 0.3  # about y through (0, 0, 0.1): relative point (0.3, 0, 0.1)
    T = fk_space(M, Slist, [0.0, theta])
    c, s = math.cos(theta), math.sin(theta)
    expected = [0.3 * c + 0.1 * s, 0.0, 0.1 - 0.3 * s + 0.1 * c]
    np.testing.assert_allclose(T[:3, 3], expected, atol=1e-12)
    with pytest.raises(ValueError, match="Slist"):
        fk_space(M, Slist, [0.0, 0.0, 0.0])


@pytest.mark.parametrize("angle", [0.0, 1.0, math.pi - 1e-3, -2.5])
def test_quaternion_matches_axis_angle(angle):
    from mile_ros.robot.backends.interbotix import quaternion_from_matrix

    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
    q = np.concatenate([axis * math.sin(angle / 2), [math.cos(angle / 2)]])
    q = -q if q[3] < 0 else q
    np.testing.assert_allclose(quaternion_from_matrix(R), q, atol=1e-9)


def test_interbotix_state_conversion_uses_index_map_and_fk():
    from mile_ros.robot.backends.interbotix import InterbotixBackend

    bot = InterbotixStandIn(home=(0.3, 0.0, 0.2))
    bot.core.joint_states.position = [0.7, 0.01, -0.02, 0.03]  # gripper first, then px py pz
    state = InterbotixBackend(bot=bot).read_state()
    assert state.joint_names == ("px", "py", "pz")
    np.testing.assert_allclose(state.joint_positions, [0.01, -0.02, 0.03])
    np.testing.assert_allclose(state.ee_position, [0.31, -0.02, 0.23])
    np.testing.assert_allclose(state.ee_orientation, [0, 0, 0, 1])


def test_interbotix_command_building():
    from mile_ros.robot.backends.interbotix import InterbotixBackend

    bot = InterbotixStandIn(home=(0.3, 0.0, 0.2))
    backend = InterbotixBackend(bot=bot, moving_time=0.3, accel_time=0.1, roll=0.0, pitch=1.2, yaw=None)
    arm = SafeArm(backend, SafetyLayer(SafetyConfig(max_step_m=0.01, max_motion_m=0.02)))
    arm.step([1.0, 0.0, -0.5, 0.9], source="test")
    arm.step([1.0, 0.0, 0.0, -0.9], source="test")
    first, second = bot.arm.pose_calls
    assert first == dict(x=pytest.approx(0.31), y=0.0, z=pytest.approx(0.195), roll=0.0, pitch=1.2, yaw=None,
                         custom_guess=[0.0, 0.0, 0.0], execute=True, moving_time=0.3, accel_time=0.1,
                         blocking=False)
    assert second["custom_guess"] == pytest.approx([0.01, 0.0, -0.005])  # seeded from the measured joints
    assert second["x"] == pytest.approx(0.32)
    assert bot.gripper.calls == [("grasp", 0.0), ("release", 0.0)]
    arm.hold()
    assert bot.arm.joint_commands_sent == [pytest.approx([0.02, 0.0, -0.005])]  # hold = measured joints


def test_interbotix_home_sleep_torque_close():
    from mile_ros.robot.backends.interbotix import InterbotixBackend

    bot = InterbotixStandIn()
    backend = InterbotixBackend(bot=bot)
    backend.move_to(np.array([0.35, 0.05, 0.25]))
    backend.home()
    np.testing.assert_allclose(backend.read_state().ee_position, [0.3, 0.0, 0.2])
    assert bot.arm.homed == 1 and bot.gripper.calls[-1][0] == "release"
    backend.sleep()
    assert bot.arm.slept == 1
    backend.set_torque(False)
    assert bot.core.torque_calls == [("group", "arm", False), ("single", "gripper", False)]
    backend.close()
    assert bot.shut_down


def test_interbotix_missing_library_says_what_to_install():
    from mile_ros.robot.backends import RobotLibraryMissingError

    with pytest.raises(RobotLibraryMissingError, match=r"\(interbotix_xs_modules\) is not installed") as info:
        make_backend("interbotix")
    assert "xsarm_control" in str(info.value) and "backend:=sim" in str(info.value)


def test_interbotix_rejects_bad_timing():
    from mile_ros.robot.backends.interbotix import InterbotixBackend

    with pytest.raises(ValueError, match="accel_time"):
        InterbotixBackend(bot=InterbotixStandIn(), moving_time=0.1, accel_time=0.1)


def test_interbotix_failed_ik_holds():
    from mile_ros.robot.backends.interbotix import InterbotixBackend

    bot = InterbotixStandIn()
    bot.arm.set_ee_pose_components = lambda **kw: ([0.0] * 3, False)
    logs: list[str] = []
    arm = SafeArm(InterbotixBackend(bot=bot), SafetyLayer(log=logs.append))
    arm.holding = False
    arm.step([0.5, 0, 0, 0], source="test")
    assert arm.failed_moves == 1 and arm.holding
    assert len(bot.arm.joint_commands_sent) == 1
    assert any("could not reach" in line and "test" in line for line in logs)
