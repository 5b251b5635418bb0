"""Two simulated arms on one ROS domain, each in its own namespace (``__ns:=/arm1``, ``__ns:=/arm2``):
every arm's bridge, policy, arbitration and recorder run as real processes over DDS, both episodes run
at the same time, and each arm's bag holds its own arm's episode and nothing of the other's."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from rosbags.rosbag2 import Reader
from std_srvs.srv import Trigger

from mile_ros.graph.bag_dataset import episode_steps
from mile_ros.graph.bag_episode import read_bag
from mile_ros.learning import MileCheckpoint, Spec, build_policy
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

# Different lengths, so that a bag holding the other arm's messages could not pass for its own.
ARMS = {"arm1": 12, "arm2": 20}
NODES = ("metaworld_bridge", "policy_node", "arbitration_node", "recorder_node")


def run_episode(probe: Probe, ns: str, bag: str, out: dict) -> None:
    """One recorded episode of the arm in ``ns``, through its own namespace's services only."""
    probe.record(f"/{ns}/recorder_node", bag, {"arm": ns}, timeout=120)
    assert probe.call(f"/{ns}/episode/reset", Trigger, timeout=120).success
    probe.wait_count(f"/{ns}/episode/end", 1, timeout=240)
    out[ns] = probe.stop_recording(f"/{ns}/recorder_node", bag, timeout=120)


def test_two_arms_in_namespaces_share_a_domain(tmp_path):
    spec = Spec(39, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    ckpt = tmp_path / "p.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (16,))).save(ckpt)
    domain = unique_domain_id()
    params = {
        "metaworld_bridge": lambda steps: {"max_episode_steps": steps, "stop_on_success": False},
        "policy_node": lambda steps: {"checkpoint": str(ckpt)},
        "arbitration_node": lambda steps: {},
        "recorder_node": lambda steps: {"output_dir": str(tmp_path / "bags"), "drain_s": 5.0},
    }
    procs = [
        NodeProcess(node, domain, params[node](steps), tmp_path, namespace=f"/{ns}")
        for ns, steps in ARMS.items()
        for node in NODES
    ]
    probe = Probe(domain)
    results: dict[str, dict] = {}
    try:
        for ns in ARMS:
            probe.listen(f"/{ns}/episode/end")
        # Nothing of the session lives at the root: every name is under an arm's namespace.
        names_wanted = ("mile/executed_action", "mile/proposed_action", "episode/reset", "robot/state")
        names_wanted += ("recorder_node/change_state", "mile/observation")
        wanted = {f"/{ns}/{n}" for ns in ARMS for n in names_wanted}
        deadline = time.monotonic() + 180
        while True:
            graph = probe.node.get_topic_names_and_types() + probe.node.get_service_names_and_types()
            names = {n for n, _ in graph}
            if wanted <= names or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert wanted <= names, f"missing {wanted - names}"
        root = ("/clock", "/rosout", "/parameter_events")
        stray = [n for n in names if not n.startswith(("/arm1/", "/arm2/", "/probe/")) and n not in root]
        assert not stray, f"names outside the arms' namespaces: {stray}"
        # Both episodes at once, on one domain.
        errors: list[BaseException] = []

        def arm(ns: str) -> None:
            try:
                run_episode(probe, ns, str(tmp_path / "bags" / ns), results)
            except BaseException as exc:  # reported below, with the nodes' output
                errors.append(exc)

        threads = [threading.Thread(target=arm, args=(ns,)) for ns in ARMS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(400)
        logs = "\n".join(f"--- {p.node} {p.log.name}\n{p.output()[-1500:]}" for p in procs)
        assert not errors, f"{errors}\n{logs}"
    finally:
        for p in procs:
            p.stop()
        probe.close()

    for ns, steps in ARMS.items():
        result = results[ns]
        assert result["steps"] == steps and result["arm"] == ns and result["namespace"] == f"/{ns}", result
        bag_dir = tmp_path / "bags" / ns
        with Reader(bag_dir) as reader:
            recorded = {c.topic for c in reader.connections}
            counts = {c.topic: c.msgcount for c in reader.connections}
        # The names the recorder subscribed to, in its namespace; none of the other arm's.
        assert recorded and all(t.startswith(f"/{ns}/") for t in recorded), recorded
        assert counts[f"/{ns}/mile/executed_action"] >= steps
        bag = read_bag(bag_dir)  # read as root names, as every bag is
        ends = bag.topic("/episode/end")
        assert len(ends) == 1 and ends[0].decode().position[0] == steps
        joined = episode_steps(bag)
        assert len(joined.stamps) + joined.held == steps and joined.incomplete == 0


def test_stop_a_namespaced_bridge_leaves_the_other(tmp_path):
    """A service call into one arm's namespace reaches that arm alone."""
    domain = unique_domain_id()
    procs = [NodeProcess("metaworld_bridge", domain, {}, tmp_path, namespace=f"/{ns}") for ns in ARMS]
    probe = Probe(domain)
    try:
        for ns in ARMS:
            probe.listen(f"/{ns}/robot/state")
        assert probe.call("/arm1/episode/reset", Trigger, timeout=180).success
        probe.wait_count("/arm1/robot/state", 1, timeout=60)
        time.sleep(1.0)
        assert probe.messages("/arm2/robot/state") == [], "arm2 stepped on arm1's reset"
        assert probe.transition("/arm2/metaworld_bridge", "deactivate", timeout=60)
        assert probe.lifecycle_state("/arm1/metaworld_bridge") == "active"  # arm1's lifecycle is its own
    finally:
        for p in procs:
            p.stop()
        probe.close()
