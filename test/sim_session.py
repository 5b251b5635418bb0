"""Helpers of the tests that run short ``mile-ros sim`` sessions as real processes (test_session_*.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

# One iteration of a 40-step episode and one evaluation: a whole session in well under a minute.
SIM_ARGS = [
    "--iterations",
    "1",
    "--episodes",
    "1",
    "--eval-episodes",
    "1",
    "--max-episode-steps",
    "40",
    "--epochs",
    "3",
    "--mental-rollouts",
    "1",
]


def sim_command(run: Path, init: Path, domain: int, *extra: str) -> list[str]:
    """``mile-ros sim`` with :data:`SIM_ARGS` into ``run`` from ``init`` on ``domain``; ``extra`` last, so
    that it overrides (argparse keeps an option's last value)."""
    cmd = [sys.executable, "-m", "mile_ros.cli.main", "sim", *SIM_ARGS, "--out", str(run), "--init-policy", str(init)]
    return [*cmd, "--domain-id", str(domain), *extra]


def wait_line(proc: subprocess.Popen, needle: str, timeout: float = 240) -> list[str]:
    """The output lines up to the first holding ``needle``; a process still silent at the deadline is
    killed, so a blocked ``readline`` ends and the test fails instead of hanging."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    seen: list[str] = []
    try:
        while True:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if needle in line:
                return seen
    finally:
        watchdog.cancel()
    raise AssertionError(f"{needle!r} not printed within {timeout} s; output:\n{''.join(seen)[-3000:]}")
