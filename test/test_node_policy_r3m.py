"""policy_node with the real robot's observation (obs_source r3m+ee) as a process over DDS: the embedding
is joined with the end-effector pose nearest to its stamp (not the latest one), 3 previous steps are
stacked, outputs carry the embedding's stamp; stale or unmatched embeddings build nothing and are logged,
and a missing embedding stream is reported."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped

from mile_ros.learning import MileCheckpoint, PolicyRunner, Spec, build_policy, load_checkpoint
from mile_ros.nodes.common import stamp_ns, to_time, vector_msg
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

EMB = 2048
T0 = 1_000 * 1_000_000_000  # stamps in ns; the driver's clock and the camera's share a machine
PERIOD = 50_000_000
NAMES = [f"r3m_{i:04d}" for i in range(EMB)]


def pose(stamp: int, xyz) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = to_time(stamp), "base_link"
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in xyz)
    msg.pose.orientation.w = 1.0
    return msg


def expected_actions(path, frames) -> np.ndarray:
    """The checkpoint run offline, one frame at a time, on exactly these frames (3 previous stacked)."""
    runner = PolicyRunner(load_checkpoint(path), deterministic=True)
    return np.array([runner.act(f) for f in frames])


def test_r3m_observation_joined_by_stamp_and_refused_when_stale(tmp_path):
    import torch

    torch.manual_seed(0)
    spec = Spec(EMB + 3, 4, action_low=(-1,) * 4, action_high=(1,) * 4, obs_source="r3m+ee")
    ckpt = tmp_path / "r3m.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (16,))).save(ckpt)
    domain = unique_domain_id()
    probe = Probe(domain)
    node = NodeProcess(
        "policy_node",
        domain,
        {"checkpoint": str(ckpt), "obs_source": "r3m+ee", "max_pose_skew_s": 0.03, "max_embedding_age_s": 0.5},
        tmp_path,
    )
    rng = np.random.default_rng(0)

    def proposals(stamp: int) -> list:
        return [m for m in probe.messages("/mile/proposed_action") if stamp_ns(m) == stamp]

    def logged(text: str, since: int) -> bool:
        """``text`` in the node's log after position ``since`` (a line of an earlier phase must not count)."""
        return text in node.output()[since:]

    def send_until(publish, done, what: str, timeout: float = 90.0) -> None:
        """Best-effort topics: publish again until ``done()`` (or fail naming ``what``)."""
        deadline = time.monotonic() + timeout
        while not done():
            assert node.alive(), node.output()[-3000:]
            assert time.monotonic() < deadline, f"timed out: {what}\n{node.output()[-3000:]}"
            publish()
            with probe.cond:
                probe.cond.wait(0.2)

    try:
        probe.listen("/mile/observation")
        probe.listen("/mile/proposed_action")
        probe.wait_matched("/camera/embedding", timeout=120)
        probe.wait_matched("/robot/ee_pose", timeout=120)
        positions = [rng.uniform(0.1, 0.4, size=3) for _ in range(8)]
        frames, stamps = [], []
        for i in range(6):
            # Poses i and i+1 are both in before embedding i: the latest pose is the wrong one.
            for k in (i, i + 1):
                probe.publish("/robot/ee_pose", pose(T0 + k * PERIOD, positions[k]))
            stamp = T0 + i * PERIOD + 10_000_000  # 10 ms after pose i, 40 ms before pose i+1
            emb = rng.normal(size=EMB)
            msg = vector_msg(stamp, NAMES, emb)

            def republish(k=i, m=msg):
                probe.publish("/robot/ee_pose", pose(T0 + k * PERIOD, positions[k]))
                probe.publish("/robot/ee_pose", pose(T0 + (k + 1) * PERIOD, positions[k + 1]))
                probe.publish("/camera/embedding", m)

            send_until(republish, lambda s=stamp: proposals(s), f"a proposal for embedding {i}")
            frames.append(np.concatenate([emb, positions[i]]))
            stamps.append(stamp)

        obs = {stamp_ns(m): m for m in probe.messages("/mile/observation")}
        for stamp, frame in zip(stamps, frames):
            assert stamp in obs, "every proposal comes with its observation, same stamp"
            got = np.asarray(obs[stamp].position)
            assert got.shape == (EMB + 3,)
            np.testing.assert_allclose(got[EMB:], frame[EMB:], atol=1e-12)  # the pose nearest in stamp
            np.testing.assert_allclose(got[:EMB], frame[:EMB], atol=1e-12)
        got_actions = np.array([proposals(s)[0].position for s in stamps])
        np.testing.assert_allclose(got_actions, expected_actions(ckpt, frames), atol=1e-5)  # 3 previous stacked

        # Stale: the robot is 2 s further on; an embedding of the old scene builds nothing. The two
        # topics are not ordered against each other, so first prove the node has the newest pose (a
        # fresh embedding joined with it); otherwise the old embedding could arrive first and be,
        # rightly, accepted against the poses the node had then.
        late = T0 + 40 * PERIOD
        fresh_stamp = late + 5_000_000
        emb = rng.normal(size=EMB)
        fresh = vector_msg(fresh_stamp, NAMES, emb)

        def newest_pose_then_fresh():
            probe.publish("/robot/ee_pose", pose(late, positions[7]))
            probe.publish("/camera/embedding", fresh)

        send_until(newest_pose_then_fresh, lambda: proposals(fresh_stamp), "a proposal at the newest pose")
        frames.append(np.concatenate([emb, positions[7]]))
        stale_stamp = late - 2_000_000_000
        stale = vector_msg(stale_stamp, NAMES, rng.normal(size=EMB))

        def stale_again():
            probe.publish("/camera/embedding", stale)

        mark = len(node.output())
        send_until(stale_again, lambda: logged("stale embedding", mark), "the stale embedding's log line")
        # No near pose: poses 200 ms apart, the embedding half-way between them.
        gap_a, gap_b = late + 100 * PERIOD, late + 104 * PERIOD
        lonely_stamp = late + 102 * PERIOD
        lonely = vector_msg(lonely_stamp, NAMES, rng.normal(size=EMB))

        def gap():
            probe.publish("/robot/ee_pose", pose(gap_a, positions[6]))
            probe.publish("/robot/ee_pose", pose(gap_b, positions[7]))
            probe.publish("/camera/embedding", lonely)

        mark = len(node.output())
        send_until(gap, lambda: logged("no end-effector pose within 30 ms", mark), "the unmatched embedding's log")
        # Poses keep coming, embeddings do not: reported.
        t = gap_b
        def poses_only():
            nonlocal t
            t += PERIOD
            probe.publish("/robot/ee_pose", pose(t, positions[5]))

        mark = len(node.output())
        send_until(poses_only, lambda: logged("no /camera/embedding for", mark), "the missing-stream log")
        assert not proposals(stale_stamp) and not proposals(lonely_stamp), "a proposal from mismatched data"
        assert stale_stamp not in {stamp_ns(m) for m in probe.messages("/mile/observation")}

        # A good embedding again: it continues the stack of the accepted frames only.
        t += PERIOD
        good_stamp = t + 5_000_000
        emb = rng.normal(size=EMB)
        good = vector_msg(good_stamp, NAMES, emb)
        send_until(
            lambda: (probe.publish("/robot/ee_pose", pose(t, positions[4])), probe.publish("/camera/embedding", good)),
            lambda: proposals(good_stamp),
            "a proposal after the refusals",
        )
        frames.append(np.concatenate([emb, positions[4]]))
        np.testing.assert_allclose(proposals(good_stamp)[0].position, expected_actions(ckpt, frames)[-1], atol=1e-5)
        assert node.alive()
    finally:
        node.stop()
        probe.close()
