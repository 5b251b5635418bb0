"""arbitration_node as a process over DDS: takeover, human action, handover limit, watchdog hold."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import Joy

from mile_ros.graph.joy_mapping import load_joy_mapping
from mile_ros.graph.topics import ACTION_NAMES
from mile_ros.learning import MileCheckpoint, Spec, build_policy
from mile_ros.nodes.common import stamp_ns, to_time, vector_msg
from mile_ros.nodes.probe import NodeProcess, Probe, realtime_problem, thread_niceness, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

MAX_JUMP = 0.2
WATCHDOG = 0.3


@pytest.fixture
def graph(tmp_path):
    domain = unique_domain_id()
    probe = Probe(domain)
    procs: list[NodeProcess] = []
    yield domain, probe, procs, tmp_path
    for p in procs:
        p.stop()
    probe.close()


def start_arbitration(domain, procs, tmp_path, wait_for_teleop: bool) -> NodeProcess:
    node = NodeProcess(
        "arbitration_node",
        domain,
        {
            "joy_mapping": "ps3",
            "max_jump": MAX_JUMP,
            "watchdog_timeout_s": WATCHDOG,
            "watchdog_rate_hz": 50.0,
            "wait_for_teleop": wait_for_teleop,
        },
        tmp_path,
    )
    procs.append(node)
    return node


def joy(stamp: int, action, takeover: bool) -> Joy:
    axes, buttons = load_joy_mapping("ps3").encode(action, ["takeover"] if takeover else [])
    msg = Joy(axes=axes, buttons=buttons)
    msg.header.stamp = to_time(stamp)
    return msg


def test_takeover_handover_and_human_action(graph):
    domain, probe, procs, tmp = graph
    start_arbitration(domain, procs, tmp, wait_for_teleop=True)
    for t in ("/mile/executed_action", "/mile/human_action", "/mile/intervention"):
        probe.listen(t)
    probe.wait_matched("/mile/proposed_action")
    probe.wait_matched("/teleop/joy")
    robot, human = np.full(4, 0.5), np.array([-0.5, -0.5, -0.5, 0.8])
    plan = [False] * 6 + [True] * 8 + [False] * 8  # robot, takeover held, released
    for i, takeover in enumerate(plan):
        stamp = 1_000_000_000 + i * 50_000_000
        probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, robot))
        probe.publish("/teleop/joy", joy(stamp, human if takeover else np.zeros(4), takeover))
        probe.wait_count("/mile/executed_action", i + 1, timeout=20)
    executed = probe.messages("/mile/executed_action")
    sources = [m.header.frame_id for m in executed]
    assert sources == ["human" if t else "robot" for t in plan]
    assert [stamp_ns(m) for m in executed] == [1_000_000_000 + i * 50_000_000 for i in range(len(plan))]
    actions = np.array([m.position for m in executed])
    jumps = np.abs(np.diff(np.vstack([np.zeros(4), actions]), axis=0))
    assert jumps.max() <= MAX_JUMP + 1e-9, f"command jumped by {jumps.max()}"
    # It does reach each side's action once the handover is over.
    np.testing.assert_allclose(actions[5], robot)
    np.testing.assert_allclose(actions[13], human, atol=1e-6)
    np.testing.assert_allclose(actions[-1], robot)
    humans = probe.wait_count("/mile/human_action", 8)
    assert [stamp_ns(m) for m in humans] == [stamp_ns(executed[i]) for i, t in enumerate(plan) if t]
    for m in humans:  # the human's own action, not the smoothed command
        np.testing.assert_allclose(m.position, human, atol=1e-6)
    flags = [m.data for m in probe.wait_count("/mile/intervention", len(plan))]
    assert flags == plan


def test_watchdog_holds_when_proposals_stop(graph):
    domain, probe, procs, tmp = graph
    start_arbitration(domain, procs, tmp, wait_for_teleop=False)
    probe.listen("/mile/executed_action")
    probe.wait_matched("/mile/proposed_action")
    action = np.array([0.1, 0.1, 0.1, 0.7])
    for i in range(20):
        probe.publish("/mile/proposed_action", vector_msg(i + 1, ACTION_NAMES, action))
        time.sleep(0.02)
    last_proposal = time.monotonic()
    probe.wait_for(
        lambda: any(m.header.frame_id == "hold" for _, m in probe.received["/mile/executed_action"]),
        timeout=10,
        what="a hold command",
    )
    first_hold = next(t for t, m in probe.received["/mile/executed_action"] if m.header.frame_id == "hold")
    hold = next(m for _, m in probe.received["/mile/executed_action"] if m.header.frame_id == "hold")
    assert first_hold - last_proposal <= WATCHDOG + 0.25, f"hold after {first_hold - last_proposal:.3f} s"
    np.testing.assert_allclose(hold.position[:3], 0.0)  # no motion
    assert hold.position[3] == pytest.approx(0.7)  # the gripper keeps its grasp


def test_killed_policy_process_leads_to_hold(graph):
    domain, probe, procs, tmp = graph
    spec = Spec(39, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    ckpt = tmp / "policy.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (32, 32))).save(ckpt)
    policy = NodeProcess("policy_node", domain, {"checkpoint": str(ckpt)}, tmp)
    procs.append(policy)
    start_arbitration(domain, procs, tmp, wait_for_teleop=False)
    probe.listen("/mile/executed_action")
    probe.wait_matched("/robot/state")
    probe.wait_publisher("/mile/executed_action")
    rng = np.random.default_rng(0)
    killed_at = None
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline:
        i += 1
        state = vector_msg(i * 50_000_000, [f"obs_{k:02d}" for k in range(39)], rng.normal(size=39))
        probe.publish("/robot/state", state)
        time.sleep(0.05)
        robot_steps = sum(m.header.frame_id == "robot" for m in probe.messages("/mile/executed_action"))
        if killed_at is None and robot_steps >= 10:
            policy.kill()  # mid-episode, no clean-up
            killed_at = time.monotonic()
        if killed_at is not None and time.monotonic() - killed_at > 2.0:
            break
    assert killed_at is not None, "the policy never drove the robot"
    holds = [t for t, m in probe.received["/mile/executed_action"] if m.header.frame_id == "hold" and t > killed_at]
    assert holds, "no hold after the policy died"
    assert holds[0] - killed_at <= WATCHDOG + 0.25, f"hold came {holds[0] - killed_at:.3f} s after the kill"
    after = [m for t, m in probe.received["/mile/executed_action"] if t > killed_at + WATCHDOG + 0.25]
    assert after and all(m.header.frame_id == "hold" for m in after)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread niceness is read from Linux /proc")
def test_niceness_reaches_every_thread_including_dds(graph):
    """The DDS threads that receive the proposal exist before the parameter is read; they get it too."""
    domain, probe, procs, tmp_path = graph
    node = NodeProcess("arbitration_node", domain, {"nice": 7}, tmp_path)  # positive: no privilege needed
    procs.append(node)
    probe.wait_matched("/mile/proposed_action", timeout=60)
    probe.wait_for(lambda: "dds" in " ".join(thread_niceness(node.proc.pid)), 30, "the DDS threads")
    nice = thread_niceness(node.proc.pid)
    assert len(nice) > 3 and any(name.startswith("dds") for name in nice), nice
    assert set(nice.values()) == {7}, nice


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread scheduling is read from Linux /proc")
def test_realtime_priority_reaches_every_thread_or_warns(graph):
    """With the privilege every thread runs SCHED_FIFO at the priority; without it the node says so
    and keeps running with normal scheduling (it still executes proposals)."""
    domain, probe, procs, tmp_path = graph
    node = NodeProcess("arbitration_node", domain, {"realtime_priority": 5}, tmp_path)
    procs.append(node)
    probe.wait_matched("/mile/proposed_action", timeout=60)
    probe.wait_for(lambda: "dds" in " ".join(thread_niceness(node.proc.pid)), 30, "the DDS threads")
    problem = realtime_problem(node, 5)
    assert problem is None, problem
    probe.listen("/mile/executed_action")
    probe.publish("/mile/proposed_action", vector_msg(1_000_000_000, ACTION_NAMES, np.full(4, 0.1)))
    probe.wait_count("/mile/executed_action", 1, timeout=20)


def command_for(probe: Probe, stamp: int):
    """The command answering the proposal stamped ``stamp`` (the watchdog's holds between steps, e.g.
    while a parameter is being set, are stamped otherwise)."""

    def find():
        return next((m for _, m in probe.received["/mile/executed_action"] if stamp_ns(m) == stamp), None)

    probe.wait_for(lambda: find() is not None, 20, f"the command for {stamp}")
    return find()


def test_asks_for_help_holds_until_a_takeover_or_the_timeout(graph):
    """ask_threshold: above it the robot holds and publishes mile/help_request; a takeover answers,
    an unanswered request times out; a cool-down of robot steps comes between requests."""
    domain, probe, procs, tmp = graph
    node = NodeProcess(
        "arbitration_node",
        domain,
        {
            "max_jump": 2.0,
            "wait_for_teleop": True,
            "ask_threshold": 0.5,
            "ask_timeout_steps": 3,
            "ask_cooldown_steps": 2,
        },
        tmp,
    )
    procs.append(node)
    for t in ("/mile/executed_action", "/mile/help_request"):
        probe.listen(t)
    for t in ("/mile/proposed_action", "/teleop/joy", "/mile/intervention_probability"):
        probe.wait_matched(t)
    probe.wait_count("/mile/help_request", 1)  # latched: none open at the start
    robot, human = np.array([0.5, 0.5, 0.5, 0.7]), np.array([-0.5, 0.0, 0.5, -1.0])
    ps = [0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    takeover = [False] * 5 + [True] + [False] * 6
    for i, (p, t) in enumerate(zip(ps, takeover)):
        stamp = 1_000_000_000 + i * 50_000_000
        probe.publish("/mile/intervention_probability", vector_msg(stamp, ["p_intervene"], [p]))
        probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, robot))
        time.sleep(0.1)  # the prediction is in before the Joy lets the step execute
        probe.publish("/teleop/joy", joy(stamp, human if t else np.zeros(4), t))
        command_for(probe, stamp)
    stamps = {1_000_000_000 + i * 50_000_000 for i in range(len(ps))}
    executed = [m for m in probe.messages("/mile/executed_action") if stamp_ns(m) in stamps]  # not watchdog holds
    sources = [m.header.frame_id for m in executed]
    # robot x3; asks (held 2 steps); the takeover answers; 2 robot steps of cool-down; asks again,
    # held 3 steps (the timeout); the robot resumes.
    expected = ["robot"] * 3 + ["hold"] * 2 + ["human"] + ["robot"] * 2 + ["hold"] * 3 + ["robot"]
    assert sources == expected, node.output()[-3000:]
    for m, s in zip(executed, sources):
        if s == "hold":
            np.testing.assert_allclose(m.position, [0, 0, 0, 0.7])  # no motion, the grasp kept
    requests = [m.data for m in probe.wait_count("/mile/help_request", 5)]
    assert requests == [False, True, False, True, False]


def test_parameters_set_at_run_time_apply_or_are_refused(graph):
    """Through the parameter service: max_jump and the asking settings apply at once; a bad value
    and the read-only scheduling parameters are refused."""
    domain, probe, procs, tmp = graph
    node = start_arbitration(domain, procs, tmp, wait_for_teleop=True)
    probe.listen("/mile/executed_action")
    probe.listen("/mile/help_request")
    for t in ("/mile/proposed_action", "/teleop/joy", "/mile/intervention_probability"):
        probe.wait_matched(t)
    step = [0]

    def run(action, takeover: bool, p: float = 0.1) -> np.ndarray:
        stamp = 1_000_000_000 + step[0] * 50_000_000
        step[0] += 1
        probe.publish("/mile/intervention_probability", vector_msg(stamp, ["p_intervene"], [p]))
        probe.publish("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, np.full(4, -0.9)))
        time.sleep(0.05)
        probe.publish("/teleop/joy", joy(stamp, action, takeover))
        msg = command_for(probe, stamp)
        return np.array(msg.position), msg.header.frame_id

    for _ in range(10):  # the robot, reached through the handover limit
        out, _ = run(np.zeros(4), False)
    np.testing.assert_allclose(out, np.full(4, -0.9))
    probe.set_params("arbitration_node", {"max_jump": 0.5})
    human = np.full(4, 0.9)
    out, source = run(human, True)
    assert source == "human"
    np.testing.assert_allclose(out, np.full(4, -0.4), atol=1e-6)  # moved by the new limit, not MAX_JUMP
    with pytest.raises(RuntimeError, match="refused"):
        probe.set_params("arbitration_node", {"joy_mapping": "no_such_pad"})
    with pytest.raises(RuntimeError, match="refused"):
        probe.set_params("arbitration_node", {"nice": 3})
    with pytest.raises(RuntimeError, match="refused"):
        probe.set_params("arbitration_node", {"max_jump": 5.0})  # outside its range
    for _ in range(5):
        run(np.zeros(4), False)
    _, source = run(np.zeros(4), False, p=0.9)
    assert source == "robot"  # not asking yet
    probe.set_params("arbitration_node", {"ask_threshold": 0.5})
    _, source = run(np.zeros(4), False, p=0.9)
    assert source == "hold", node.output()[-2000:]
    probe.wait_for(lambda: probe.messages("/mile/help_request")[-1].data, 10, "a help request")
    probe.set_params("arbitration_node", {"ask_threshold": 0.0})  # off again: the request closes
    probe.wait_for(lambda: not probe.messages("/mile/help_request")[-1].data, 10, "the request closed")
    _, source = run(np.zeros(4), False, p=0.9)
    assert source == "robot"
