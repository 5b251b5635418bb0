"""``mile-ros benchmark --backend ray`` on a local Ray head started here: the process pool's CSV and records,
and the same resume.

The head runs on loopback only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray from advertising
the machine's outward address) with 2 CPUs and no dashboard, in a session of its own that the
fixture ends whole.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

TASK = "LunarLander-v3"
PLAN = ["--experiment", "single", "--tasks", TASK, "--preset", "smoke", "--episodes", "1", "--methods", "iwr"]
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}


def benchmark(out: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mile_ros.cli.main", "benchmark", *PLAN, "--out", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **RAY_ENV})
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _pids_under(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (the head's own temp dir: only its processes)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head --block`` on a random port; yields its address."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's sockets live under it
    ray = Path(sys.executable).with_name("ray")
    cmd = [str(ray), "start", "--head", "--block", "--port", "0", "--num-cpus", "2", "--include-dashboard", "false"]
    cmd += ["--temp-dir", str(temp), "--disable-usage-stats"]
    log = (temp / "head.log").open("w")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **RAY_ENV}, start_new_session=True
    )
    try:
        marker = temp / "ray_current_cluster"
        deadline = time.monotonic() + 180
        while not (marker.is_file() and marker.read_text().strip()):
            assert proc.poll() is None, (temp / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start in 180 s"
            time.sleep(0.5)
        address = marker.read_text().strip()
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        stop_head(proc, temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def stop_head(proc: subprocess.Popen, temp: Path) -> None:
    """SIGTERM, then SIGKILL, to the head's session and to every process under its temp dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for pid in _pids_under(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is not None and not _pids_under(temp):
            return


def rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows without the timings (seconds differ from run to run), in the plan's order."""
    with path.open(newline="") as f:
        out = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in csv.DictReader(f)]
    return sorted(out, key=lambda r: (r["method"], int(r["seed"]), int(r["iteration"])))


@pytest.mark.slow
def test_ray_backend_gives_the_process_pools_results_and_resumes(tmp_path, ray_head):
    process, on_ray = tmp_path / "process", tmp_path / "ray"
    benchmark(process, "--seeds", "0", "1")  # the default backend: a pool of 2 processes
    # The prepared task and humans (phase 1) are reused: the cells are what the backends share out.
    shutil.copytree(process / "cache", on_ray / "cache")
    first = benchmark(on_ray, "--seeds", "0", "--backend", "ray", "--address", ray_head)
    assert "[1/1]" in first.stderr
    again = benchmark(on_ray, "--seeds", "0", "1", "--backend", "ray", "--address", ray_head)
    assert "1 already in" in again.stderr and "[1/1]" in again.stderr  # resumed: seed 1 only
    expected, got = rows(process / "single.csv"), rows(on_ray / "single.csv")
    assert len(got) == 4 and not [r for r in got if r["error"]]
    assert got == expected
    for seed in (0, 1):
        name = f"single-iwr-s{seed}.npz"
        a, b = np.load(process / "records" / TASK / name), np.load(on_ray / "records" / TASK / name)
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    # Nothing left behind by the cluster check.
    assert not list(on_ray.glob(".ray-probe-*"))


def test_ray_backend_refuses_a_missing_cluster_before_writing(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = tmp_path / "out"
    proc = benchmark(out, "--seeds", "0", "--backend", "ray", "--address", f"127.0.0.1:{port}", check=False)
    assert proc.returncode == 2 and f"no Ray cluster at 127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert not out.exists()
    proc = benchmark(out, "--seeds", "0", "--address", f"127.0.0.1:{port}", check=False)
    assert proc.returncode == 2 and "--backend ray" in proc.stderr, proc.stderr
    assert not out.exists()
