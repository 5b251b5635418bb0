"""policy_node as a process: stamped outputs, takeover probability, hot checkpoint swap without a gap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import String

from mile_ros.learning import FrameStacker, MileCheckpoint, Spec, build_policy, load_checkpoint
from mile_ros.nodes.common import stamp_ns, vector_msg
from mile_ros.nodes.probe import (
    NodeProcess,
    Probe,
    may_use_realtime,
    realtime_problem,
    thread_niceness,
    unique_domain_id,
)

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

OBS = 39


def make_ckpt(path, seed, mental):
    import torch

    torch.manual_seed(seed)
    spec = Spec(OBS, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    policy = build_policy(spec.stacked_dim, 4, False, (32, 32))
    m = build_policy(spec.stacked_dim, 4, False, (32, 32)) if mental else None
    MileCheckpoint(spec, policy, m, cost=0.5, sigma=1.0).save(path)
    return path


def expected_actions(path, frames):
    import torch

    ck = load_checkpoint(path)
    stacker = FrameStacker(OBS, 3)
    out = []
    for f in frames:
        obs = torch.from_numpy(stacker.push(f)).unsqueeze(0)
        with torch.no_grad():
            out.append(np.clip(ck.policy.act(obs, True)[0].numpy(), -1, 1))
    return np.array(out)


def test_policy_node_swaps_checkpoints_without_a_gap(tmp_path):
    a = make_ckpt(tmp_path / "a.pt", 0, mental=False)
    b = make_ckpt(tmp_path / "b.pt", 1, mental=True)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess("policy_node", domain, {"checkpoint": str(a)}, tmp_path)
    try:
        for t in (
            "/mile/observation",
            "/mile/proposed_action",
            "/mile/intervention_probability",
            "/mile/active_checkpoint",
        ):
            probe.listen(t)
        probe.wait_matched("/robot/state")
        probe.wait_matched("/mile/checkpoint")
        rng = np.random.default_rng(0)
        frames, swap_sent, b_active_at = [], None, None
        for i in range(200):
            frame = rng.normal(size=OBS)
            frames.append(frame)
            stamp = (i + 1) * 50_000_000
            msg = vector_msg(stamp, [f"obs_{k:02d}" for k in range(OBS)], frame)
            deadline = time.monotonic() + 20
            while not any(stamp_ns(m) == stamp for m in probe.messages("/mile/proposed_action")):
                assert time.monotonic() < deadline, f"no proposal for step {i}: a gap in commands"
                probe.publish("/robot/state", msg)  # best effort: resend until answered
                with probe.cond:
                    probe.cond.wait(0.2)
            if i == 20:
                # A broken file first: refused, logged, the policy keeps acting with A.
                probe.publish("/mile/checkpoint", String(data=str(tmp_path / "broken.pt")))
                log_deadline = time.monotonic() + 20
                while "broken.pt" not in node.output():
                    assert time.monotonic() < log_deadline, "the broken checkpoint was not reported"
                    time.sleep(0.05)
                probe.publish("/mile/checkpoint", String(data=str(b)))
                swap_sent = i
            if (
                swap_sent is not None
                and b_active_at is None
                and any(m.data == str(b) for m in probe.messages("/mile/active_checkpoint"))
            ):
                b_active_at = i
            if b_active_at is not None and i >= b_active_at + 20:
                break
        assert b_active_at is not None, "the policy node never reported the new checkpoint"
        props = {}
        for m in probe.messages("/mile/proposed_action"):
            props.setdefault(stamp_ns(m), np.array(m.position))
        n = len(frames)
        got = np.array([props[(i + 1) * 50_000_000] for i in range(n)])
        exp_a, exp_b = expected_actions(a, frames), expected_actions(b, frames)
        from_a = np.all(np.isclose(got, exp_a, atol=1e-5), axis=1)
        from_b = np.all(np.isclose(got, exp_b, atol=1e-5), axis=1)
        switch = int(np.argmax(from_b))
        assert from_a[:switch].all() and from_b[switch:].all(), "each step must come from A, then from B"
        assert swap_sent < switch <= b_active_at + 1
        obs = {stamp_ns(m): np.array(m.position) for m in probe.messages("/mile/observation")}
        np.testing.assert_allclose(obs[50_000_000], frames[0])
        probs = probe.messages("/mile/intervention_probability")
        assert probs and all(stamp_ns(p) >= (switch + 1) * 50_000_000 for p in probs)  # only B has a mental model
        assert all(0.0 <= p.position[0] <= 1.0 for p in probs)
        assert "could not load" in node.output() and node.alive()
    finally:
        node.stop()
        probe.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread scheduling is read from Linux /proc")
def test_policy_node_realtime_priority_reaches_every_thread_or_warns(tmp_path):
    """Its publish must not be preempted (docs/architecture.md): with the privilege every thread runs
    SCHED_FIFO at the priority; without it the node says so and still proposes actions."""
    domain = unique_domain_id()
    probe = Probe(domain)
    params = {"checkpoint": str(make_ckpt(tmp_path / "a.pt", 0, False)), "realtime_priority": 3}
    node = NodeProcess("policy_node", domain, params, tmp_path)
    try:
        probe.listen("/mile/proposed_action")
        probe.wait_matched("/robot/state", timeout=60)
        probe.wait_for(lambda: "dds" in " ".join(thread_niceness(node.proc.pid)), 30, "the DDS threads")
        problem = realtime_problem(node, 3)
        assert problem is None, problem
        names, stamps = [f"obs_{i:02d}" for i in range(OBS)], iter(range(1_000_000_000, 2_000_000_000, 50_000_000))

        def proposed() -> bool:  # states are best effort: send until one is answered
            probe.publish("/robot/state", vector_msg(next(stamps), names, np.zeros(OBS)))
            return bool(probe.messages("/mile/proposed_action"))

        probe.wait_for(proposed, 20, "a proposal")
        # A hot swap loads on a thread put on normal scheduling on purpose: not taken for a demotion.
        swapped = str(make_ckpt(tmp_path / "b.pt", 1, False))
        probe.listen("/mile/active_checkpoint")
        probe.wait_matched("/mile/checkpoint")
        probe.publish("/mile/checkpoint", String(data=swapped))
        active = lambda: any(m.data == swapped for m in probe.messages("/mile/active_checkpoint"))  # noqa: E731
        probe.wait_for(active, 60, "the swap")
        time.sleep(2.5)  # one more round of the node's 2 s check
        assert realtime_problem(node, 3, settle=0) is None
        if may_use_realtime() and "could not set" not in node.output():
            # Something outside moves a thread back (a watchdog demoting busy real-time tasks): said.
            tid = int(next(iter(thread_niceness(node.proc.pid))).rsplit("/", 1)[1])
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            probe.wait_for(lambda: "normal scheduling" in node.output(), 10, "the node's warning")
            assert "could not set real-time priority 3 (the kernel has 1 thread(s)" in node.output()
    finally:
        probe.close()
        node.stop()


def test_a_deactivated_policy_proposes_nothing_until_activated(tmp_path):
    """policy_node is a lifecycle node: deactivated, an observation gets no proposal; activated again,
    it answers from a fresh frame history (the first answer is the one of a first frame)."""
    a = make_ckpt(tmp_path / "a.pt", 0, mental=False)
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess("policy_node", domain, {"checkpoint": str(a)}, tmp_path)
    try:
        probe.listen("/mile/proposed_action")
        probe.wait_matched("/robot/state", timeout=120)
        frames = np.random.default_rng(1).normal(size=(3, OBS))

        def send(i: int) -> None:
            probe.publish(
                "/robot/state", vector_msg((i + 1) * 50_000_000, [f"obs_{k:02d}" for k in range(OBS)], frames[i])
            )

        assert probe.lifecycle_state("policy_node") == "active"  # autostart
        send(0)
        probe.wait_count("/mile/proposed_action", 1)
        assert probe.transition("policy_node", "deactivate")
        send(1)
        time.sleep(1.0)
        assert len(probe.messages("/mile/proposed_action")) == 1, "an inactive policy proposed"
        assert probe.transition("policy_node", "activate")
        send(2)
        second = probe.wait_count("/mile/proposed_action", 2)[1]
        np.testing.assert_allclose(second.position, expected_actions(a, [frames[2]])[0], atol=1e-5)
    finally:
        node.stop()
        probe.close()
