"""docs/interfaces.md lists every parameter, topic and service the real-robot nodes declare, as running
processes report them over DDS (widowx_driver on its sim backend, webcam_node on a video file,
r3m_encoder with untrained weights, ps3_teleop without a pad)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "interfaces.md"
IGNORED_TOPICS = {"/rosout", "/parameter_events"}
ROS_OWN_PARAMS = {"use_sim_time", "start_type_description_service"}


def doc_tables():
    text = DOC.read_text()
    topics: dict[str, set[str]] = {}
    for name, type_ in re.findall(r"^\| `(/[^`]+)` \| `([^`]+)` \| \w+ \|", text, re.M):
        topics.setdefault(name, set()).add(type_)
    services = dict(re.findall(r"^\| `(/[^`]+)` \| `(std_srvs/\w+)` \|", text, re.M))
    params = {}
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        name = re.match(r"`(\w+)`\n", block)
        if name:
            rows = re.findall(r"^\| `(\w+)` \| (\w+) \| [^|]* \| ([^|]*) \|", block, re.M)
            params[name.group(1)] = {p: (t, r.strip()) for p, t, r in rows}
    return topics, services, params


def test_doc_lists_what_the_robot_nodes_declare(tmp_path):
    import rclpy
    from rcl_interfaces.msg import ParameterType
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter_client import AsyncParameterClient

    types = {ParameterType.PARAMETER_BOOL: "bool", ParameterType.PARAMETER_INTEGER: "integer",
             ParameterType.PARAMETER_DOUBLE: "double", ParameterType.PARAMETER_STRING: "string",
             ParameterType.PARAMETER_DOUBLE_ARRAY: "double_array"}
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for _ in range(5):
        writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.release()
    nodes = {
        "widowx_driver": ["-p", "backend:=sim"],
        "webcam_node": ["-p", f"source:={video}", "-p", "loop:=true"],
        "r3m_encoder": ["-p", "allow_random_weights:=true", "-p", "cpu_threads:=1"],
        "ps3_teleop": [],
    }
    domain_id = os.getpid() % 100 + 20
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    procs = {n: subprocess.Popen([sys.executable, "-m", f"mile_ros.nodes.{n}", "--ros-args", *a], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n, a in nodes.items()}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    probe = rclpy.create_node("doc_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    spinner = threading.Thread(target=lambda: _spin(executor, context), daemon=True)
    spinner.start()
    topics, services, params = doc_tables()
    try:
        for name in nodes:
            client = AsyncParameterClient(probe, name)
            assert client.wait_for_services(timeout_sec=120), f"{name} did not start: {_output(procs[name])}"
            listed = _wait(client.list_parameters()).result.names
            wanted = [n for n in listed if n not in ROS_OWN_PARAMS and not n.startswith("qos_overrides")]
            declared = {}
            for d in _wait(client.describe_parameters(wanted)).descriptors:
                assert d.description, f"{name}.{d.name} has no description"
                rng = ""
                for r in list(d.integer_range) + list(d.floating_point_range):
                    rng = f"{r.from_value:g} – {r.to_value:g}"
                declared[d.name] = (types[d.type], rng)
            assert name in params, f"docs/interfaces.md has no parameter table for {name}"
            documented = {k: (t, _normalise(r)) for k, (t, r) in params[name].items()}
            assert declared == documented, f"{name}: declared {declared} vs documented {documented}"

            deadline = time.monotonic() + 30
            while True:
                pubs = probe.get_publisher_names_and_types_by_node(name, "/")
                subs = probe.get_subscriber_names_and_types_by_node(name, "/")
                srvs = probe.get_service_names_and_types_by_node(name, "/")
                if len(pubs) > 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            for topic, kinds in pubs + subs:
                if topic in IGNORED_TOPICS:
                    continue
                assert topic in topics, f"{name} uses {topic}, not in docs/interfaces.md"
                pkg, _, msg = kinds[0].split("/")
                assert f"{pkg}/{msg}" in topics[topic], f"{topic}: {kinds[0]} vs documented {topics[topic]}"
            for service, kinds in srvs:
                if service.startswith(f"/{name}/"):
                    continue
                assert service in services, f"{name} serves {service}, not in docs/interfaces.md"
                pkg, _, srv = kinds[0].split("/")
                assert f"{pkg}/{srv}" == services[service]
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} died: {_output(proc)}"
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)
        probe.destroy_node()
        context.try_shutdown()


def _normalise(text: str) -> str:
    if not text:
        return ""
    lo, hi = (float(x) for x in text.split(" – "))
    return f"{lo:g} – {hi:g}"


def _wait(future, timeout: float = 30.0):
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout), "parameter service did not answer"
    return future.result()


def _spin(executor, context) -> None:
    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # shutting down
            return


def _output(proc) -> str:
    if proc.poll() is None:
        return "(still running)"
    return proc.stdout.read()[-2000:]
