"""Start the node graph as processes (what ``ros2 launch`` does, for machines without it).

Each node runs as ``python -m mile_ros.nodes.<node> --ros-args --params-file ...``. The graph stops
as a whole: when the ``main`` node exits (its exit code is the graph's), when any other node dies, or
the main one is killed by a signal (named, with the tail of its log), or on SIGINT, SIGTERM or SIGHUP
to the launcher (:class:`GraphSignalled`). Stopping sends SIGINT, then SIGTERM, then SIGKILL; a
second signal during the stop moves on to the next step at once. On Linux every node also gets
SIGINT from the kernel when the launcher dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "STOP_SIGNALS",
    "GraphSignalled",
    "NodeFailedError",
    "NodeProcess",
    "loopback_dds_env",
    "run_graph",
]

# The signals that stop the graph: Ctrl-C, `kill` / systemd / CI cancel, a closed terminal or ssh.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL`` (Popen's negative codes)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class NodeFailedError(RuntimeError):
    def __init__(self, node: str, code: int, log_tail: str) -> None:
        super().__init__(f"node {node} {describe_exit(code)}\n{log_tail}")
        self.node, self.code, self.log_tail = node, code, log_tail


class GraphSignalled(KeyboardInterrupt):
    """The launcher got a stop signal; the graph has been stopped. A KeyboardInterrupt, so code
    that only knew Ctrl-C still treats every stop signal as an interruption."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal."""
        return 128 + self.signum


@dataclass
class NodeProcess:
    name: str
    params_files: Sequence[Path] = ()
    extra_args: Sequence[str] = ()
    echo: bool = False  # copy its output to the console too
    enclave: str | None = None  # DDS security: its keys and permissions in ROS_SECURITY_KEYSTORE
    proc: subprocess.Popen | None = None
    log: Path | None = None
    _log_file: object = field(default=None, repr=False)
    _partial: bytearray = field(default_factory=bytearray, repr=False)  # an echoed line not yet ended
    _log_failed: bool = field(default=False, repr=False)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", f"mile_ros.nodes.{self.name}", "--ros-args"]
        for f in self.params_files:
            cmd += ["--params-file", str(f)]
        if self.enclave:
            cmd += ["--enclave", self.enclave]
        return cmd + list(self.extra_args)


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Resolved once in the launcher: the child between fork and exec must only call, never load.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: the kernel sends the node SIGINT when the launcher dies, however it dies.

    Chosen over a parent-watch thread in each node: it needs no polling and no GIL (a node busy in C
    code still gets the signal), works for every node including ones we do not write, and is kept
    across exec. SIGINT, the launcher's own first step, which every node handles (KeyboardInterrupt:
    the recorder closes its bag, the session manager saves its state); not SIGKILL, which would lose
    that. (Nodes now take SIGTERM's path as SIGINT's too, ``mile_ros.nodes.common.catch_stop_signals``;
    SIGINT stays the first step, as ``ros2 launch`` does.) The parent check closes the race of a
    launcher dying between fork and prctl. Linux only; elsewhere nodes outlive a killed launcher.
    """
    if _prctl is None:
        return None

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl: never exec the node
            os._exit(1)

    return preexec


def start(node: NodeProcess, log_dir: Path, env: dict[str, str]) -> None:
    node.log = log_dir / f"{node.name}.log"
    # Unbuffered: a failed write (full disk) shows at the write, never later in close().
    node._log_file = open(node.log, "ab", buffering=0)  # noqa: SIM115 (kept open for the process's life)
    out = subprocess.PIPE if node.echo else node._log_file
    node.proc = subprocess.Popen(
        node.command(),
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # our own Ctrl-C handling, not the terminal's
        preexec_fn=_die_with_parent(os.getpid()),
    )
    if node.echo:
        os.set_blocking(node.proc.stdout.fileno(), False)


def catch_sigint() -> None:
    """Make SIGINT raise KeyboardInterrupt here even where it was inherited as ignored.

    A shell starts background jobs (``cmd &``, CI runners, nohup) with SIGINT ignored, and Python then
    installs no handler: ``kill -INT`` would be lost and the graph would not stop cleanly.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


class _Signals:
    """Stop signals noted by the handler and acted on by the launcher's loop, at a safe point (never
    in the middle of starting a node, which would leave a process nobody tracks)."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.stopping = False  # the graph is being stopped
        self.hurry = False  # a signal during the stop: skip the rest of the current grace period

    def __call__(self, signum: int, frame: object) -> None:
        if self.first is None:
            self.first = signum
        if self.stopping:
            self.hurry = True

    def install(self) -> dict[int, object]:
        # SIGINT too, even where inherited as ignored (see catch_sigint).
        return {s: signal.signal(s, self) for s in STOP_SIGNALS}

    def check(self) -> None:
        if self.first is not None:
            raise GraphSignalled(self.first)


def stop_all(nodes: Sequence[NodeProcess], grace: float = 10.0, signals: _Signals | None = None) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to every live node; echoed output is copied meanwhile."""
    live = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
    if signals is not None:
        signals.stopping = True
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for n in live:
            if n.proc.poll() is None:
                n.proc.send_signal(sig)
        if signals is not None:
            signals.hurry = False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(n.proc.poll() is None for n in live):
            _pump_all(nodes)
            if signals is not None and signals.hurry:
                break
            time.sleep(0.05)
        live = [n for n in live if n.proc.poll() is None]
        if not live:
            break
    for n in nodes:
        if n.proc is not None and n.echo:
            _pump(n, final=n.proc.poll() is not None)
        if n._log_file is not None:
            with contextlib.suppress(OSError):  # unbuffered: nothing is lost; a full disk must not stop the teardown
                n._log_file.close()


def run_graph(nodes: Sequence[NodeProcess], main: str, log_dir: Path, env: dict[str, str] | None = None) -> int:
    """Run until ``main`` exits (return its code).

    Raises NodeFailedError if another node dies first or ``main`` is killed by a signal, and
    GraphSignalled on SIGINT, SIGTERM or SIGHUP; in every case the whole graph is stopped first.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    signals = _Signals()
    previous = signals.install()
    try:
        for n in nodes:
            start(n, log_dir, env)
        while True:
            signals.check()
            for n in nodes:
                if n.echo:
                    _pump(n)
                code = n.proc.poll()
                if code is None:
                    continue
                if n.echo:
                    _pump(n, final=True)
                if n.name == main and code >= 0:
                    return code
                raise NodeFailedError(n.name, code, _tail(n.log))
            time.sleep(0.05)
    finally:
        stop_all(nodes, signals=signals)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _pump_all(nodes: Sequence[NodeProcess]) -> None:
    for n in nodes:
        if n.echo and n.proc is not None:
            _pump(n)


def _pump(node: NodeProcess, final: bool = False) -> None:
    """Copy what an echoed node has written to the console and its log, line by line, without blocking.

    Reads the pipe's descriptor directly (non-blocking): a buffered reader behind ``select`` can hold
    lines that ``select`` no longer reports, and they were lost when the graph stopped. ``final``
    (the node has exited): also the last line, if it has no newline.
    """
    if node.proc is None or node.proc.stdout is None or node.proc.stdout.closed:
        return
    fd = node.proc.stdout.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            break
        if not chunk:  # end of file: the node and everything it started are gone
            break
        node._partial += chunk
        end = node._partial.rfind(b"\n")
        if end >= 0:
            _emit(node, bytes(node._partial[: end + 1]))
            del node._partial[: end + 1]
    if final and node._partial:
        _emit(node, bytes(node._partial) + b"\n")
        node._partial.clear()


_console_gone = False


def _emit(node: NodeProcess, data: bytes) -> None:
    """Whole lines to the console and the node's log; a failure of one never stops the other."""
    global _console_gone
    if not _console_gone:
        try:
            sys.stdout.flush()  # what was print()ed before goes first
            view = memoryview(data)
            while view:  # straight to the descriptor: short writes (a signal, a full pipe) are resumed here
                view = view[os.write(sys.stdout.fileno(), view) :]
        except (OSError, ValueError):  # terminal closed (SIGHUP), stdout closed
            _console_gone = True
    if node._log_file is None or node._log_failed:
        return
    view = memoryview(data)
    try:
        while view:
            view = view[node._log_file.write(view) :]
    except OSError as exc:
        node._log_failed = True
        _warn(f"could not write {node.log} ({exc.strerror or exc}); its output goes on to the console only")


def _warn(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"mile-ros: {text}", file=sys.stderr, flush=True)


_LOOPBACK_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- Written by mile-ros: this graph's DDS traffic on loopback and shared memory only. -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>mile_loopback_udp</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>mile_shm</transport_id>
        <type>SHM</type>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="mile_loopback" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>mile_loopback_udp</transport_id>
          <transport_id>mile_shm</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def loopback_dds_env(env: dict[str, str], profile_dir: Path) -> str:
    """Keep the graph's DDS on this host unless ``env`` asks otherwise; return what was done, in words.

    ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` only limits whom the nodes *look for*: their sockets
    still listen on every interface, and a process on another host that names this one as a static
    peer joins the graph. So, for Fast DDS (the default RMW), a profile that binds its UDP transport
    to 127.0.0.1 (plus shared memory) is written to ``profile_dir`` and made the default. Left alone
    where the caller chose: another discovery range, static peers, another RMW, or its own Fast DDS
    profile file.
    """
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if env["ROS_AUTOMATIC_DISCOVERY_RANGE"] != "LOCALHOST":
        return f"discovery range {env['ROS_AUTOMATIC_DISCOVERY_RANGE']} (from the environment)"
    if env.get("ROS_STATIC_PEERS"):
        return "discovery on localhost plus ROS_STATIC_PEERS (from the environment)"
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return f"discovery on localhost ({env['RMW_IMPLEMENTATION']}: sockets not restricted)"
    if env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return f"discovery on localhost, Fast DDS profile {env['FASTDDS_DEFAULT_PROFILES_FILE']} (from the environment)"
    profile = profile_dir / "fastdds_loopback.xml"
    if not (profile.is_file() and profile.read_text() == _LOOPBACK_PROFILE):
        tmp = profile.with_name(f".{profile.name}.tmp")
        tmp.write_text(_LOOPBACK_PROFILE)
        os.replace(tmp, profile)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return "private to this host: DDS on 127.0.0.1 and shared memory only"


def domains_in_use() -> set[int]:
    """ROS domains in use on this host: those with a DDS port bound (each domain owns ports
    7400 + 250 x id + 0..249) and those in a live process's ``ROS_DOMAIN_ID`` (a session whose
    nodes are still starting has bound nothing yet). Linux /proc; elsewhere none."""
    used = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            port = int(line.split()[1].rsplit(":", 1)[1], 16)
            if port >= 7400:
                used.add((port - 7400) // 250)
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            for item in environ.read_bytes().split(b"\0"):
                if item.startswith(b"ROS_DOMAIN_ID="):
                    with contextlib.suppress(ValueError):
                        used.add(int(item[len(b"ROS_DOMAIN_ID=") :]))
    return used
