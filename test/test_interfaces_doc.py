"""docs/interfaces.md lists every topic, service and parameter the running nodes declare, with its type."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from rcl_interfaces.msg import ParameterType
from rclpy.parameter_client import AsyncParameterClient

from mile_ros.learning import MileCheckpoint, Spec, build_policy
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

DOC = Path(__file__).resolve().parents[1] / "docs" / "interfaces.md"
TYPES = {
    ParameterType.PARAMETER_BOOL: "bool",
    ParameterType.PARAMETER_INTEGER: "integer",
    ParameterType.PARAMETER_DOUBLE: "double",
    ParameterType.PARAMETER_STRING: "string",
}
IGNORED_TOPICS = {"/rosout", "/parameter_events"}
ROS_OWN_PARAMS = {"use_sim_time", "start_type_description_service"}


def doc_tables() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, tuple[str, str]]]]:
    text = DOC.read_text()
    topics = dict(re.findall(r"^\| `(/[^`]+)` \| `([^`]+)` \| \w+ \|", text, re.M))
    services = dict(re.findall(r"^\| `(/[^`]+)` \| `(std_srvs/\w+)` \|", text, re.M))
    params: dict[str, dict[str, tuple[str, str]]] = {}
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        name = re.match(r"`(\w+)`", block)
        if name:
            rows = re.findall(r"^\| `(\w+)` \| (\w+) \| [^|]* \| ([^|]*) \|", block, re.M)
            params[name.group(1)] = {p: (t, r.strip()) for p, t, r in rows}
    return topics, services, params


def short(type_name: str) -> str:
    pkg, _, name = type_name.split("/")
    return f"{pkg}/{name}"


def describe(probe: Probe, node: str) -> dict[str, tuple[str, str]]:
    client = AsyncParameterClient(probe.node, node)
    assert client.wait_for_services(timeout_sec=60), f"{node} has no parameter services"

    def wait(future):
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        assert done.wait(30)
        return future.result()

    names = [
        n
        for n in wait(client.list_parameters()).result.names
        if n not in ROS_OWN_PARAMS and not n.startswith("qos_overrides")
    ]
    out = {}
    for d in wait(client.describe_parameters(names)).descriptors:
        assert d.description, f"{node}.{d.name} has no description"
        rng = ""
        for r in list(d.integer_range) + list(d.floating_point_range):
            rng = f"{r.from_value:g} – {r.to_value:g}"
        out[d.name] = (TYPES[d.type], rng)
    return out


def normalise_range(text: str) -> str:
    if not text:
        return ""
    lo, hi = (float(x) for x in text.split(" – "))
    return f"{lo:g} – {hi:g}"


def test_doc_lists_what_the_nodes_declare(tmp_path):
    spec = Spec(39, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    ckpt = tmp_path / "p.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (16,))).save(ckpt)
    domain, lonely = unique_domain_id(), unique_domain_id()
    nodes = {
        "metaworld_bridge": ({}, domain),
        "policy_node": ({"checkpoint": str(ckpt)}, domain),
        "arbitration_node": ({}, domain),
        "simulated_human": ({"checkpoint": str(ckpt), "mental_rollouts": 1}, domain),
        "recorder_node": ({"output_dir": str(tmp_path)}, domain),
        "trainer_node": ({"initial_checkpoint": str(ckpt)}, domain),
        # Alone on its own domain, so it does not start driving the others.
        "session_manager": ({"initial_checkpoint": str(ckpt), "run_dir": str(tmp_path / "run")}, lonely),
    }
    procs = [NodeProcess(n, d, p, tmp_path) for n, (p, d) in nodes.items()]
    probes = {domain: Probe(domain), lonely: Probe(lonely)}
    topics, services, params = doc_tables()
    try:
        for name, (_, d) in nodes.items():
            probe = probes[d]
            declared = describe(probe, name)
            assert name in params, f"docs/interfaces.md has no parameter table for {name}"
            documented = {k: (t, normalise_range(r)) for k, (t, r) in params[name].items()}
            assert declared == documented, f"{name}: declared {declared} vs documented {documented}"
            deadline = time.monotonic() + 30
            while True:  # publishers and subscriptions appear in the graph shortly after start-up
                pubs = probe.node.get_publisher_names_and_types_by_node(name, "/")
                subs = probe.node.get_subscriber_names_and_types_by_node(name, "/")
                srvs = probe.node.get_service_names_and_types_by_node(name, "/")
                if len(pubs) > 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            for topic, types in pubs + subs:
                if topic in IGNORED_TOPICS:
                    continue
                assert topic in topics, f"{name} uses {topic}, not in docs/interfaces.md"
                assert short(types[0]) == topics[topic], f"{topic}: {types[0]} vs documented {topics[topic]}"
            for service, types in srvs:
                if service.startswith(f"/{name}/"):
                    continue  # the parameter and type-description services every node has
                assert service in services, f"{name} serves {service}, not in docs/interfaces.md"
                assert short(types[0]) == services[service]
        for proc in procs:
            assert proc.alive(), f"{proc.node} died: {proc.output()[-2000:]}"
    finally:
        for proc in procs:
            proc.stop()
        for probe in probes.values():
            probe.close()
