"""docs/interfaces.md lists every parameter, topic and service that every node declares, as the running
processes report them over DDS: the simulated graph's nodes and the real-robot nodes (widowx_driver on its
sim backend, webcam_node on a video file, r3m_encoder with untrained weights, ps3_teleop without a pad),
all started at once and checked by one helper. Every node runs in a namespace (``__ns:=/doc_ns``): a name
the doc lists must be relative and land under it (only ``/clock`` is absolute)."""

from __future__ import annotations

import importlib
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")
cv2 = pytest.importorskip("cv2")

import numpy as np  # noqa: E402
from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from mile_ros.learning import MileCheckpoint, Spec, build_policy  # noqa: E402
from mile_ros.nodes import NODES  # noqa: E402
from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id  # noqa: E402

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

DOC = Path(__file__).resolve().parents[1] / "docs" / "interfaces.md"
TYPES = {
    ParameterType.PARAMETER_BOOL: "bool",
    ParameterType.PARAMETER_INTEGER: "integer",
    ParameterType.PARAMETER_DOUBLE: "double",
    ParameterType.PARAMETER_STRING: "string",
    ParameterType.PARAMETER_DOUBLE_ARRAY: "double_array",
}
IGNORED_TOPICS = {"/rosout", "/parameter_events"}
NS = "/doc_ns"
ROS_OWN_PARAMS = {"use_sim_time", "start_type_description_service"}
# Nodes whose parameters are not yet declared live or read-only (declare_parameters without strict).
UNCLASSIFIED = {"arbitration_node", "simulated_human"}


class DocTables:
    """The topic, service and per-node parameter tables of docs/interfaces.md."""

    def __init__(self, text: str) -> None:
        self.topics: dict[str, set[str]] = {}  # a topic may be listed by the graph and by the robot nodes
        for name, type_ in re.findall(r"^\| `(/?[a-z_]+(?:/[a-z_/]+)?)` \| `([^`]+)` \| \w+ \|", text, re.M):
            self.topics.setdefault(name, set()).add(type_)
        self.services = dict(re.findall(r"^\| `(/?[a-z_]+/[^`]+)` \| `(std_srvs/\w+)` \|", text, re.M))
        self.params: dict[str, dict[str, tuple[str, str]]] = {}
        for block in re.split(r"^### ", text, flags=re.M)[1:]:
            name = re.match(r"`(\w+)`\n", block)
            if name:
                rows = re.findall(r"^\| `(\w+)` \| (\w+) \| [^|]* \| ([^|]*) \|", block, re.M)
                self.params[name.group(1)] = {p: (t, normalise_range(r.strip())) for p, t, r in rows}


def normalise_range(text: str) -> str:
    if not text:
        return ""
    lo, hi = (float(x) for x in text.split(" – "))
    return f"{lo:g} – {hi:g}"


def short(type_name: str) -> str:
    pkg, _, name = type_name.split("/")
    return f"{pkg}/{name}"


def wait(future, timeout: float = 30.0):
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout), "parameter service did not answer"
    return future.result()


def check_node(probe: Probe, name: str, proc: NodeProcess, doc: DocTables) -> None:
    """One node's declared parameters (type, range, description) and its topics and services vs the doc."""
    client = AsyncParameterClient(probe.node, f"{NS}/{name}")
    assert client.wait_for_services(timeout_sec=120), f"{name} did not start: {proc.output()[-2000:]}"
    listed = wait(client.list_parameters(), 180).result.names  # a node answers once its constructor is done
    wanted = [n for n in listed if n not in ROS_OWN_PARAMS and not n.startswith("qos_overrides")]
    declared = {}
    # Read-only unless live (applied when set at run time): every node but those not yet classified.
    table = {p.name: p for p in importlib.import_module(f"mile_ros.nodes.{name}").PARAMETERS}
    for d in wait(client.describe_parameters(wanted)).descriptors:
        if name not in UNCLASSIFIED:
            p = table[d.name]
            assert d.read_only == (p.read_only or not p.live), (
                f"{name}.{d.name}: read_only {d.read_only}, live {p.live}"
            )
        assert d.description, f"{name}.{d.name} has no description"
        rng = ""
        for r in list(d.integer_range) + list(d.floating_point_range):
            rng = f"{r.from_value:g} – {r.to_value:g}"
        declared[d.name] = (TYPES[d.type], rng)
    assert name in doc.params, f"docs/interfaces.md has no parameter table for {name}"
    assert declared == doc.params[name], f"{name}: declared {declared} vs documented {doc.params[name]}"

    deadline = time.monotonic() + 30
    while True:  # publishers and subscriptions appear in the graph shortly after start-up
        pubs = probe.node.get_publisher_names_and_types_by_node(name, NS)
        subs = probe.node.get_subscriber_names_and_types_by_node(name, NS)
        srvs = probe.node.get_service_names_and_types_by_node(name, NS)
        if len(pubs) > 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for topic, types in pubs + subs:
        if topic in IGNORED_TOPICS or topic == f"{NS}/{name}/transition_event":  # a lifecycle node's own
            continue
        if topic != "/clock":  # the one absolute name; the others are relative, so under the namespace
            assert topic.startswith(f"{NS}/"), f"{name} uses {topic}: an absolute name, outside its namespace {NS}"
            topic = topic.removeprefix(f"{NS}/")
        assert topic in doc.topics, f"{name} uses {topic}, not in docs/interfaces.md"
        assert short(types[0]) in doc.topics[topic], f"{topic}: {types[0]} vs documented {doc.topics[topic]}"
    for service, types in srvs:
        assert service.startswith(f"{NS}/"), f"{name} serves {service}: an absolute name, outside its namespace {NS}"
        service = service.removeprefix(f"{NS}/")
        if service.startswith(f"{name}/"):
            continue  # the parameter and type-description services every node has
        assert service in doc.services, f"{name} serves {service}, not in docs/interfaces.md"
        assert short(types[0]) == doc.services[service]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doc_lists_what_every_node_declares(tmp_path):
    spec = Spec(39, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    ckpt = tmp_path / "p.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (16,))).save(ckpt)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for _ in range(5):
        writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.release()
    domain, lonely = unique_domain_id(), unique_domain_id()
    nodes = {
        "metaworld_bridge": ({}, domain),
        "policy_node": ({"checkpoint": str(ckpt)}, domain),
        "arbitration_node": ({}, domain),
        "simulated_human": ({"checkpoint": str(ckpt), "mental_rollouts": 1}, domain),
        "recorder_node": ({"output_dir": str(tmp_path)}, domain),
        "trainer_node": ({"initial_checkpoint": str(ckpt)}, domain),
        # Alone on its own domain, so it does not start driving the others.
        "session_manager": (
            {"initial_checkpoint": str(ckpt), "run_dir": str(tmp_path / "run"), "service_timeout_s": 3600.0},
            lonely,
        ),
        # The driver and the pad node end episodes of nothing here: nothing listens for it.
        "widowx_driver": ({"backend": "sim"}, lonely),
        "webcam_node": ({"source": str(video), "loop": True}, domain),
        "r3m_encoder": ({"allow_random_weights": True, "cpu_threads": 1}, domain),
        "ps3_teleop": ({}, lonely),
        # Its /trainer/train stands in front of a trainer that is not there (the trainer above serves its own).
        "bag_mirror": ({"bags_dir": str(tmp_path / "mirror"), "sync_period_s": 0.0}, lonely),
        "foxglove_bridge": ({"port": free_port()}, domain),
    }
    assert sorted(nodes) == sorted(NODES), "every node (mile_ros.nodes.NODE_GROUPS) is checked"
    procs = {n: NodeProcess(n, d, p, tmp_path, namespace=NS) for n, (p, d) in nodes.items()}
    probes = {domain: Probe(domain), lonely: Probe(lonely)}
    doc = DocTables(DOC.read_text())
    try:
        for name, (_, d) in nodes.items():
            check_node(probes[d], name, procs[name], doc)
        for name, proc in procs.items():
            assert proc.alive(), f"{name} died: {proc.output()[-2000:]}"
    finally:
        for proc in procs.values():  # all at once: each takes a moment to shut down
            if proc.alive():
                proc.proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            proc.stop()
        for probe in probes.values():
            probe.close()
