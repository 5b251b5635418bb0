"""``colcon build`` of the package and its installed layout (where ``ros2 run``/``ros2 launch`` look)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODES = [
    "metaworld_bridge",
    "policy_node",
    "arbitration_node",
    "simulated_human",
    "recorder_node",
    "trainer_node",
    "session_manager",
    "widowx_driver",
    "webcam_node",
    "r3m_encoder",
    "ps3_teleop",
]


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    if shutil.which("colcon") is None:
        pytest.skip("colcon is not installed (pip install colcon-core colcon-ros colcon-python-setup-py ...)")
    work = tmp_path_factory.mktemp("colcon")
    env = dict(os.environ, AMENT_PREFIX_PATH=os.environ.get("AMENT_PREFIX_PATH", sys.prefix))
    done = subprocess.run(
        [
            "colcon",
            "--log-base",
            str(work / "log"),
            "build",
            "--base-paths",
            str(ROOT),
            "--build-base",
            str(work / "build"),
            "--install-base",
            str(work / "install"),
            "--packages-select",
            "mile_ros",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=work,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work / "install" / "mile_ros"


def test_every_executable_under_lib(install):
    lib = install / "lib" / "mile_ros"
    for node in [*NODES, "mile-ros"]:
        exe = lib / node
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing or not executable"
        assert f"'console_scripts', '{node}'" in exe.read_text() or f"mile_ros.nodes.{node}" in exe.read_text()


def test_share_holds_launch_config_and_index_marker(install):
    share = install / "share" / "mile_ros"
    for name in ("sim.launch.py", "trainer.launch.py"):
        assert (share / "launch" / name).is_file()
    for name in ("sim.yaml", "joy_ps3.yaml", "joy_sdl.yaml"):
        assert (share / "config" / name).read_text() == (ROOT / "config" / name).read_text()
    assert (share / "package.xml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "mile_ros").is_file()


def test_installed_node_runs_and_finds_its_config(install, tmp_path):
    """An installed executable starts as ``ros2 run`` would start it, and exits cleanly on SIGINT."""
    pytest.importorskip("rclpy")

    env = dict(os.environ, AMENT_PREFIX_PATH=f"{install.parent}{os.pathsep}{sys.prefix}")
    exe = install / "lib" / "mile_ros" / "arbitration_node"
    proc = subprocess.Popen(
        [sys.executable, str(exe), "--ros-args", "-p", "joy_mapping:=sdl"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(5)  # still running: it started
    finally:
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
