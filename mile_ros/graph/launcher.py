"""Start the node graph as processes (what ``ros2 launch`` does, for machines without it).

Each node runs as ``python -m mile_ros.nodes.<node> --ros-args --params-file ...``. The graph stops
as a whole: when the ``main`` node exits (its exit code is the graph's), when any other node dies
(named, with the tail of its log), or on Ctrl-C. Stopping sends SIGINT, then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NodeFailedError", "NodeProcess", "run_graph"]


class NodeFailedError(RuntimeError):
    def __init__(self, node: str, code: int, log_tail: str) -> None:
        super().__init__(f"node {node} exited with code {code}\n{log_tail}")
        self.node, self.code, self.log_tail = node, code, log_tail


@dataclass
class NodeProcess:
    name: str
    params_files: Sequence[Path] = ()
    extra_args: Sequence[str] = ()
    echo: bool = False  # copy its output to the console too
    proc: subprocess.Popen | None = None
    log: Path | None = None
    _log_file: object = field(default=None, repr=False)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", f"mile_ros.nodes.{self.name}", "--ros-args"]
        for f in self.params_files:
            cmd += ["--params-file", str(f)]
        return cmd + list(self.extra_args)


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text)


def start(node: NodeProcess, log_dir: Path, env: dict[str, str]) -> None:
    node.log = log_dir / f"{node.name}.log"
    node._log_file = open(node.log, "ab")  # noqa: SIM115 (kept open for the process's life)
    out = subprocess.PIPE if node.echo else node._log_file
    node.proc = subprocess.Popen(
        node.command(),
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # our own Ctrl-C handling, not the terminal's
    )


def catch_sigint() -> None:
    """Make SIGINT raise KeyboardInterrupt here even where it was inherited as ignored.

    A shell starts background jobs (``cmd &``, CI runners, nohup) with SIGINT ignored, and Python then
    installs no handler: ``kill -INT`` would be lost and the graph would not stop cleanly.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_all(nodes: Sequence[NodeProcess], grace: float = 10.0) -> None:
    live = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for n in live:
            if n.proc.poll() is None:
                n.proc.send_signal(sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(n.proc.poll() is None for n in live):
            time.sleep(0.05)
        live = [n for n in live if n.proc.poll() is None]
        if not live:
            break
    for n in nodes:
        if n._log_file is not None:
            n._log_file.close()


def run_graph(nodes: Sequence[NodeProcess], main: str, log_dir: Path, env: dict[str, str] | None = None) -> int:
    """Run until ``main`` exits (return its code); raise NodeFailedError if another node dies first."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    catch_sigint()
    try:
        for n in nodes:
            start(n, log_dir, env)
        while True:
            for n in nodes:
                if n.echo:
                    _pump(n)
                code = n.proc.poll()
                if code is None:
                    continue
                if n.name == main:
                    if n.echo:
                        _pump(n, final=True)
                    return code
                raise NodeFailedError(n.name, code, _tail(n.log))
            time.sleep(0.05)
    finally:
        stop_all(nodes)


def _pump(node: NodeProcess, final: bool = False) -> None:
    """Copy available output of an echoed node to the console and its log, without blocking."""
    import select

    stream = node.proc.stdout
    while True:
        ready, _, _ = select.select([stream], [], [], 0)
        if not ready:
            return
        line = stream.readline()
        if not line:
            return
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()
        node._log_file.write(line)
        node._log_file.flush()
        if not final:
            continue
