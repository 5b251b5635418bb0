"""A CPU load the benchmark makes itself: busy-loop processes it starts and stops, bounded in time.

The processes are spread over ``sessions`` new sessions, as that many other users' jobs would be;
where the kernel groups scheduling by session (``/proc/sys/kernel/sched_autogroup_enabled``), each
session gets one share of the CPUs, whatever its number of processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["BusyLoad", "autogroup_enabled"]

# One session's leader: forks the session's busy loops and spins too. Each stops at the deadline or
# when the benchmark that started it is gone, so a killed benchmark leaves no load behind for long.
_LEADER = """
import os, sys, time
n, deadline, owner = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
for _ in range(n - 1):
    if os.fork() == 0:
        break
while time.monotonic() < deadline:
    for _ in range(200_000):
        pass
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        break
"""


def autogroup_enabled() -> bool | None:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None


class BusyLoad:
    """``processes`` busy loops in ``sessions`` sessions while the block runs (at most ``timeout_s``)."""

    def __init__(self, processes: int, sessions: int = 1, timeout_s: float = 1800.0) -> None:
        if processes < 1 or not 1 <= sessions <= processes:
            raise ValueError(f"need processes >= 1 and 1 <= sessions <= processes, got {processes}, {sessions}")
        self.processes, self.sessions, self.timeout_s = processes, sessions, timeout_s
        self.leaders: list[subprocess.Popen] = []

    def __enter__(self) -> BusyLoad:
        shares = [self.processes // self.sessions + (k < self.processes % self.sessions) for k in range(self.sessions)]
        for n in shares:
            self.leaders.append(
                subprocess.Popen(
                    [sys.executable, "-c", _LEADER, str(n), str(self.timeout_s), str(os.getpid())],
                    start_new_session=True,
                )
            )
        time.sleep(0.5)  # forked and spinning before anything is timed
        return self

    def __exit__(self, *exc: object) -> None:
        for leader in self.leaders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader.pid, signal.SIGKILL)  # the leader and its forks: one process group
            leader.wait(10)
        self.leaders.clear()
