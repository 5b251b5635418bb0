"""Driving nodes from outside, for tests and benchmarks: node processes and an in-process probe node.

:class:`NodeProcess` starts ``python -m mile_ros.nodes.<node>`` with parameters in its own process;
:class:`Probe` is an rclpy node in a private context on the same domain that publishes inputs,
collects outputs and calls services, spinning in a background thread.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from mile_ros.graph.launcher import domains_in_use
from mile_ros.graph.topics import topic_info
from mile_ros.nodes.common import call_service, qos
from mile_ros.nodes.msgtypes import msg_class

__all__ = [
    "NodeProcess",
    "Probe",
    "may_use_realtime",
    "realtime_problem",
    "ros_env",
    "thread_niceness",
    "thread_stat",
    "unique_domain_id",
]

_counter = itertools.count()


def unique_domain_id() -> int:
    """A domain id for this process and call (0-101 is the range safe on Linux) that no live process
    has in its environment: the 90 ids cycle within a long test run, and a node an earlier test left
    behind on a reused id would answer this test's services."""
    busy = domains_in_use()
    for _ in range(90):
        domain = 10 + (os.getpid() * 7 + next(_counter) * 13) % 90
        if domain not in busy:
            return domain
    raise RuntimeError(f"every ROS domain id from 10 to 99 is in use by a live process: {sorted(busy)}")


def ros_env(domain_id: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    return env


def thread_stat(pid: int, field: int) -> dict[str, int]:
    """One numeric field of /proc/PID/task/TID/stat for every thread of ``pid``, by thread name and id
    (``field`` counted from 1 as in proc(5))."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        out[f"{name}/{task.name}"] = int(stat[stat.rindex(")") + 2 :].split()[field - 3])
    return out


def thread_niceness(pid: int) -> dict[str, int]:
    """Niceness of every thread of ``pid`` (Linux keeps one per thread)."""
    return thread_stat(pid, 19)


@functools.cache
def may_use_realtime() -> bool:
    """Whether this machine lets a process take SCHED_FIFO (root, CAP_SYS_NICE or an rtprio limit)."""
    probe = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def thread_scheduling(pid: int) -> dict[str, tuple[int, int]]:
    """(policy, real-time priority) of every thread of ``pid`` from the kernel's sched_getscheduler and
    sched_getparam (authoritative; /proc's stat fields are shown beside them when they disagree)."""
    out = {}
    for name in thread_stat(pid, 41):
        tid = int(name.rsplit("/", 1)[1])
        with contextlib.suppress(ProcessLookupError):  # a thread that exited meanwhile
            out[name] = (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority)
    return out


def realtime_problem(node: NodeProcess, priority: int, settle: float = 6.0) -> str | None:
    """What is wrong with ``node``'s scheduling after asking for ``realtime_priority: priority``, or
    None: every thread SCHED_FIFO at that priority, or (where the machine does not allow it, or the
    kernel did not keep it) every thread on normal scheduling and the node's warning in its output.
    Call once the DDS threads exist; it retries for ``settle`` seconds, since the node re-reads its
    threads every 2 s and warns about a demotion that came after its start."""
    deadline = time.monotonic() + settle
    while (problem := _realtime_problem(node, priority)) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    return problem


def _realtime_problem(node: NodeProcess, priority: int) -> str | None:
    sched = thread_scheduling(node.proc.pid)
    warned = f"could not set real-time priority {priority}" in node.output()
    fifo = {os.SCHED_FIFO}
    proc_view = f"/proc says policies {thread_stat(node.proc.pid, 41)}, priorities {thread_stat(node.proc.pid, 40)}"
    if warned:
        if {policy for policy, _ in sched.values()} != {os.SCHED_OTHER}:
            return f"the node warned but threads are not all on normal scheduling: {sched}; {proc_view}"
        return None
    if not may_use_realtime():
        return f"no FIFO privilege and no warning from the node: {sched}"
    if {policy for policy, _ in sched.values()} != fifo or {prio for _, prio in sched.values()} != {priority}:
        return f"not every thread SCHED_FIFO at {priority} and no warning: (policy, priority) {sched}; {proc_view}"
    return None


class NodeProcess:
    """One node in its own process, in ROS namespace ``namespace`` (``/arm1``; "": the root); output
    goes to ``log``."""

    def __init__(
        self,
        node: str,
        domain_id: int,
        params: dict[str, Any] | None = None,
        log_dir: Path | None = None,
        params_files: tuple[Path, ...] = (),
        namespace: str = "",
    ) -> None:
        self.node = node
        cmd = [sys.executable, "-m", f"mile_ros.nodes.{node}", "--ros-args"]
        if namespace:
            cmd += ["-r", f"__ns:={namespace}"]
        for f in params_files:
            cmd += ["--params-file", str(f)]
        for key, value in (params or {}).items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            cmd += ["-p", f"{key}:={text}"]
        where = namespace.strip("/").replace("/", "_")
        self.log = (log_dir or Path("/tmp")) / f"{node}{'-' + where if where else ''}-{domain_id}-{os.getpid()}.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 (open for the process's life)
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=ros_env(domain_id))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash)."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return self.proc.returncode


class Probe:
    """An rclpy node on ``domain_id`` that records what arrives on the topics it listens to."""

    def __init__(self, domain_id: int, name: str = "probe") -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self.infos: dict[str, list[dict]] = defaultdict(list)
        self.cond = threading.Condition()
        self.pubs: dict[str, Any] = {}
        self.clients: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # shutdown while spinning
            self.executor.spin()

    def listen(self, topic: str, depth: int | None = 1000) -> None:
        """Record every message of ``topic`` with its arrival time here; ``infos`` keeps, in the same
        order, the DDS message info (``source_timestamp``: when the sender published it)."""

        def cb(msg, info):
            with self.cond:
                self.received[topic].append((time.monotonic(), msg))
                self.infos[topic].append(info)
                self.cond.notify_all()

        self.node.create_subscription(msg_class(topic_info(topic).type), topic, cb, qos(topic, depth))

    def publish(self, topic: str, msg: Any) -> None:
        if topic not in self.pubs:
            self.pubs[topic] = self.node.create_publisher(msg_class(topic_info(topic).type), topic, qos(topic))
        self.pubs[topic].publish(msg)

    def wait_matched(self, topic: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``count`` subscribers match our publisher of ``topic`` (discovery)."""
        if topic not in self.pubs:
            self.pubs[topic] = self.node.create_publisher(msg_class(topic_info(topic).type), topic, qos(topic))
        deadline = time.monotonic() + timeout
        while self.pubs[topic].get_subscription_count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscriber on {topic} after {timeout} s")
            time.sleep(0.02)

    def wait_publisher(self, topic: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.node.count_publishers(topic) < 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no publisher of {topic} after {timeout} s")
            time.sleep(0.02)

    def messages(self, topic: str) -> list[Any]:
        with self.cond:
            return [m for _, m in self.received[topic]]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
                self.cond.wait(min(left, 0.05))

    def wait_count(self, topic: str, n: int, timeout: float = 30.0) -> list[Any]:
        self.wait_for(lambda: len(self.received[topic]) >= n, timeout, f"{n} messages on {topic}")
        return self.messages(topic)

    def call(self, service: str, srv_type: type, request: Any = None, timeout: float = 30.0) -> Any:
        if service not in self.clients:
            self.clients[service] = self.node.create_client(srv_type, service)
        return call_service(self.node, self.clients[service], request or srv_type.Request(), timeout)

    def transition(self, node: str, label: str, timeout: float = 30.0) -> bool:
        """Ask lifecycle node ``node`` for a transition (``configure``, ``activate``, ``deactivate``,
        ``cleanup``); whether it was made."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(label=label))
        return bool(self.call(f"{node}/change_state", ChangeState, request, timeout).success)

    def lifecycle_state(self, node: str, timeout: float = 30.0) -> str:
        """The lifecycle state of ``node``: ``unconfigured``, ``inactive``, ``active``, ``finalized``."""
        from lifecycle_msgs.srv import GetState

        return str(self.call(f"{node}/get_state", GetState, timeout=timeout).current_state.label)

    def record(self, node: str, bag: str, info: dict[str, Any] | None = None, timeout: float = 30.0) -> None:
        """Start recorder ``node`` into ``bag``: its parameters, then configure and activate."""
        import json

        self.set_params(node, {"bag_path": bag, "episode_info": json.dumps(info or {})}, timeout)
        for label in ("configure", "activate"):
            if not self.transition(node, label, timeout):
                raise RuntimeError(f"{node} refused {label} for {bag}")

    def stop_recording(self, node: str, bag: str, timeout: float = 60.0) -> dict[str, Any]:
        """Stop recorder ``node`` (deactivate, then cleanup); the episode's summary from its bag."""
        from mile_ros.graph.bag_episode import episode_meta

        if not self.transition(node, "deactivate", timeout):
            raise RuntimeError(f"{node} refused deactivate")
        if not self.transition(node, "cleanup", timeout):
            raise RuntimeError(f"{node} refused cleanup")
        return episode_meta(bag)

    def set_params(self, node: str, values: dict[str, Any], timeout: float = 30.0) -> None:
        client = AsyncParameterClient(self.node, node)
        if not client.wait_for_services(timeout_sec=timeout):
            raise TimeoutError(f"parameter services of {node} not found")
        done = threading.Event()
        future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f"setting parameters of {node} timed out")
        bad = [r.reason for r in future.result().results if not r.successful]
        if bad:
            raise RuntimeError(f"{node} refused parameters: {bad}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
