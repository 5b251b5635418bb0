"""Shared helpers of the nodes: QoS profiles, parameters with descriptors, stamps, vectors, services."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import JointState

from mile_ros.graph.topics import topic_info

__all__ = [
    "AUTOSTART",
    "SCHEDULING_PARAMETERS",
    "Param",
    "StopSignal",
    "autostart",
    "call_service",
    "catch_stop_signals",
    "declare_parameters",
    "qos",
    "run_node",
    "set_scheduling",
    "stamp_ns",
    "to_time",
    "vector_msg",
]


def qos(kind_or_topic: str, depth: int | None = None) -> QoSProfile:
    """The QoS class of a topic (docs/interfaces.md): sensor, reliable, latched or clock.

    ``depth`` overrides the history depth (it does not take part in QoS matching): a recorder
    that falls behind for a moment must not lose reliable messages from a full queue.
    """
    kind = kind_or_topic if kind_or_topic in _KINDS else topic_info(kind_or_topic).qos
    if kind == "sensor":
        base = qos_profile_sensor_data
    elif kind in _RELIABLE:  # reliable: the last 10 for late joiners' sake; latched: the last 1, kept
        base = QoSProfile(
            depth=_RELIABLE[kind][0],
            reliability=ReliabilityPolicy.RELIABLE,
            history=HistoryPolicy.KEEP_LAST,
            durability=_RELIABLE[kind][1],
        )
    elif kind == "clock":  # what rclpy's TimeSource subscribes with
        base = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
    else:
        raise ValueError(f"unknown QoS class {kind!r}")
    if depth is None:
        return base
    return QoSProfile(
        depth=depth, reliability=base.reliability, history=HistoryPolicy.KEEP_LAST, durability=base.durability
    )


_RELIABLE = {"reliable": (10, DurabilityPolicy.VOLATILE), "latched": (1, DurabilityPolicy.TRANSIENT_LOCAL)}
_KINDS = ("sensor", "clock", *_RELIABLE)


def publisher(node: Node, topic: str):
    """A publisher of a topic of :data:`~mile_ros.graph.topics.TOPICS` with its type and QoS; a relative
    name lands in the node's namespace."""
    from mile_ros.nodes.msgtypes import msg_class

    return node.create_publisher(msg_class(topic_info(topic).type), topic, qos(topic))


def subscription(node: Node, topic: str, callback: Callable, raw: bool = False, depth: int | None = None):
    """A subscription to a topic of :data:`~mile_ros.graph.topics.TOPICS` with its type and QoS."""
    from mile_ros.nodes.msgtypes import msg_class

    return node.create_subscription(
        msg_class(topic_info(topic).type), topic, callback, qos(topic, depth), raw=raw
    )


@dataclass(frozen=True)
class Param:
    """A node parameter: name, default, description, range (inclusive, int and float) and choices.

    ``live``: the node applies a value set at run time (``ros2 param set``), through the ``apply``
    callback given to :func:`declare_parameters` or by reading it where it is used (the bridge's
    ``seed`` at each reset). A parameter that is not live is read at start-up only, and a node declared
    ``strict`` makes it read-only, so that a run-time set is refused instead of reported as done and
    ignored. ``read_only`` makes a parameter read-only in any node.
    """

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None  # inclusive, for int and float parameters
    read_only: bool = False
    choices: tuple[str, ...] | None = None  # the allowed values of a string parameter
    live: bool = False


def declare_parameters(
    node: Node,
    params: Sequence[Param],
    *,
    strict: bool = False,
    apply: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Declare every parameter with its description and range; return their values.

    ``strict``: every parameter that is not ``live`` is declared read-only (the convention of every
    mile_ros node that passes it). ``apply``: called after a run-time set with the live parameters'
    new values ({name: value}), to apply them; the set is refused first when a value is not one of its
    ``choices``.
    """
    live = {p.name: p for p in params if p.live}
    out = {}
    for p in params:
        desc = ParameterDescriptor(description=p.description, read_only=p.read_only or (strict and not p.live))
        if p.range is not None:
            lo, hi = p.range
            if isinstance(p.default, bool):
                raise TypeError(f"{p.name}: a bool has no range")
            if isinstance(p.default, int):
                desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)
                ]
        out[p.name] = node.declare_parameter(p.name, p.default, desc).value
        if p.choices is not None and out[p.name] not in p.choices:
            raise ValueError(f"parameter {p.name}: {out[p.name]!r} is not one of {', '.join(p.choices)}")
    if any(p.choices for p in live.values()):

        def check(changed: list) -> SetParametersResult:
            for param in changed:
                p = live.get(param.name)
                if p is not None and p.choices is not None and param.value not in p.choices:
                    reason = f"parameter {p.name}: {param.value!r} is not one of {', '.join(p.choices)}"
                    return SetParametersResult(successful=False, reason=reason)
            return SetParametersResult(successful=True)

        node.add_on_set_parameters_callback(check)
    if apply is not None and live:

        def applied(changed: list) -> None:
            values = {q.name: q.value for q in changed if q.name in live}
            if values:
                apply(values)

        node.add_post_set_parameters_callback(applied)
    return out


AUTOSTART = Param(
    "autostart",
    True,
    "configure and activate at start-up (false: wait for the lifecycle transitions, as from a lifecycle manager)",
)


def autostart(node: Any, enabled: bool) -> None:
    """Configure and activate a lifecycle node at the end of its start-up, when ``enabled``."""
    if enabled:
        node.trigger_configure()
        node.trigger_activate()


SCHEDULING_PARAMETERS = (
    Param(
        "nice",
        0,
        "scheduling niceness of the node's threads; negative runs it ahead of the busy nodes (needs CAP_SYS_NICE)",
        (-20, 19),
    ),
    Param(
        "realtime_priority",
        0,
        "SCHED_FIFO priority of every thread of the node (1-98, preempts all normal tasks; needs "
        "CAP_SYS_NICE or an rtprio limit); 0: normal scheduling with `nice`",
        (0, 98),
    ),
)


def _thread_ids() -> list[int]:
    """This process's threads (Linux); elsewhere just the calling one (0)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def set_scheduling(node: Node, nice: int = 0, realtime_priority: int = 0) -> None:
    """Niceness and/or real-time FIFO priority for every thread of this process, for the nodes on
    the control path (the ``SCHEDULING_PARAMETERS``).

    Linux schedules threads, not processes: the DDS threads that receive a message and wake the
    executor already exist once the node is made, so each thread gets the setting; threads made
    later inherit it from their creator. Under FIFO a woken thread runs before any normal task
    instead of queueing behind rendering and the networks; the kernel's real-time throttling still
    keeps a share of each second for normal tasks. Without the privilege the node warns and runs on.
    """
    if nice:
        try:
            for tid in _thread_ids():
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (PermissionError, OSError) as exc:
            now = os.getpriority(os.PRIO_PROCESS, 0)
            node.get_logger().warning(f"could not set niceness {nice} ({exc}); running at {now}")
    if realtime_priority:
        try:
            for tid in _thread_ids():
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(realtime_priority))
            # A kernel or container may accept the call and still run a thread normally, or move it
            # back later (a watchdog demoting busy real-time tasks): read it back now and every 2 s.
            _check_fifo()
        except (PermissionError, OSError) as exc:
            _warn_normal(node, realtime_priority, exc)
            return
        timers = []

        def watch() -> None:
            try:
                _check_fifo()
            except OSError as exc:
                timers[0].cancel()
                _warn_normal(node, realtime_priority, exc)

        timers.append(node.create_timer(2.0, watch))


def _check_fifo() -> None:
    from mile_ros.graph.policy_swap import NORMAL_BY_DESIGN  # checkpoint loads run normally on purpose

    normal = [
        tid for tid in _thread_ids() if tid not in NORMAL_BY_DESIGN and _policy(tid) not in (os.SCHED_FIFO, None)
    ]
    if normal:
        raise OSError(f"the kernel has {len(normal)} thread(s) on normal scheduling")


def _warn_normal(node: Node, priority: int, exc: BaseException) -> None:
    node.get_logger().warning(f"could not set real-time priority {priority} ({exc}); running with normal scheduling")


def _policy(tid: int) -> int | None:
    """A thread's scheduling policy, or None once it has exited."""
    try:
        return os.sched_getscheduler(tid)
    except ProcessLookupError:
        return None


def stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def to_time(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def vector_msg(
    stamp: int, names: Sequence[str], values: Sequence[float] | np.ndarray, frame_id: str = ""
) -> JointState:
    """A stamped vector (conventions in docs/interfaces.md)."""
    msg = JointState()
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    msg.name = list(names)
    msg.position = np.asarray(values, dtype=np.float64).reshape(-1).tolist()
    return msg


def call_service(node: Node, client, request, timeout: float) -> Any:
    """Call a service from a thread other than the executor's; raise TimeoutError naming it."""
    if not client.wait_for_service(timeout_sec=timeout):
        raise TimeoutError(f"service {client.srv_name} is not available after {timeout:.0f} s")
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        client.remove_pending_request(future)
        raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
    return future.result()


class StopSignal(KeyboardInterrupt):
    """SIGINT or SIGTERM in a node's main thread: a KeyboardInterrupt, so both take Ctrl-C's path."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopHandler:
    """Raise :class:`StopSignal` in the main thread at the first stop signal; note later ones only,
    so that a second signal (the launcher's SIGTERM after its SIGINT) cannot cut the clean-up short:
    the recorder closing its bag, the session manager leaving its state (SIGKILL still ends it)."""

    def __init__(self) -> None:
        self.first: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.first is None:
            self.first = signum
            raise StopSignal(signum)


def catch_stop_signals() -> None:
    """SIGTERM takes SIGINT's path in this process: call before ``rclpy.init``.

    rclpy's own handler turns SIGTERM into a shutdown of its context, not an exception: a main thread
    waiting in Python (the session manager waiting for an episode's end) kept waiting, and was seen
    running 30 s after a ``kill``. Installed first, this handler is the one rclpy's chains to (as it
    does for SIGINT), so the executor is still woken by rclpy and the main thread gets the exception.
    SIGINT is set too, also where it was inherited as ignored (background jobs, see ``catch_sigint``).
    """
    handler = _StopHandler()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def run_node(
    factory: Callable[[], Node], args: Sequence[str] | None = None, threads: int = 1, freeze_gc: bool = False
) -> int:
    """Init rclpy, spin the node until shutdown or Ctrl-C, and return an exit code (1 on error).

    ``freeze_gc``: for nodes on the latency-critical path. Everything built before spinning (imported
    modules, the node) lives as long as the process; frozen, the collector stops rescanning it, and
    its full collections, which land on whichever message is being handled, get short.
    """
    catch_stop_signals()  # SIGINT and SIGTERM: KeyboardInterrupt, also when started as a background job
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = factory()
        if freeze_gc:
            import gc

            gc.collect()
            gc.freeze()
        if threads > 1:
            from rclpy.executors import MultiThreadedExecutor

            executor = MultiThreadedExecutor(num_threads=threads)
            executor.add_node(node)
            executor.spin()
        else:
            rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the graph runner names the failed node from this exit
        from rclpy.executors import ExternalShutdownException

        if not isinstance(exc, ExternalShutdownException):
            # A constructor that failed leaves no node to ask its name: the factory says which it was.
            who = node.get_name() if node is not None else f"{getattr(factory, '__name__', factory)} (starting)"
            print(f"[{who}] fatal: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


def monotonic() -> float:
    return time.monotonic()
