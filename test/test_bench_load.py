"""The training bench's own load: N busy loops in K sessions that hold the CPUs, all gone afterwards."""

from __future__ import annotations

import os
import subprocess
import time

from mile_ros.benchmarks.load import BusyLoad
from mile_ros.graph.training import free_cores


def test_busy_load_holds_the_cpus_and_leaves_nothing_behind():
    cores = len(os.sched_getaffinity(0))
    with BusyLoad(2 * cores + 1, sessions=2, timeout_s=60) as load:
        sessions = {os.getsid(p.pid) for p in load.leaders}
        assert len(sessions) == 2 and os.getsid(0) not in sessions
        members = subprocess.run(["ps", "-eo", "sid="], capture_output=True, text=True).stdout.split()
        assert sum(int(s) in sessions for s in members) == 2 * cores + 1
        assert free_cores(0.5) < 0.5
    deadline = time.monotonic() + 5  # SIGKILL lands when a busy CPU next schedules the process
    while alive := survivors(sessions):
        assert time.monotonic() < deadline, alive
        time.sleep(0.1)


def survivors(sessions: set[int]) -> list[str]:
    rows = subprocess.run(["ps", "-eo", "sid=,stat="], capture_output=True, text=True).stdout.splitlines()
    return [r for r in rows if int(r.split()[0]) in sessions and not r.split()[1].startswith("Z")]
