"""``colcon build`` of the package and its installed layout (where ``ros2 run``/``ros2 launch`` look)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier

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
    "bag_mirror",
    "foxglove_bridge",
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


def installed_env(install: Path, ament: bool = True) -> dict[str, str]:
    """The environment of the colcon install alone: its site-packages first and no other mile_ros on
    PYTHONPATH (a sourced workspace's would be imported instead), its prefix on AMENT_PREFIX_PATH."""
    site = install / Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    assert (site / "mile_ros" / "__init__.py").is_file(), f"no mile_ros under {site}"
    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and not Path(p, "mile_ros").exists()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *others]))
    if ament:
        env["AMENT_PREFIX_PATH"] = f"{install}{os.pathsep}{sys.prefix}"
    else:
        env.pop("AMENT_PREFIX_PATH", None)
    return env


def test_installed_package_finds_its_data_without_the_ament_index(install, tmp_path):
    """From the colcon install, AMENT_PREFIX_PATH unset: the code and the data are the install's."""
    script = (
        "import mile_ros, mile_ros.paths as p\n"
        "from mile_ros.graph.joy_mapping import default_mapping_path\n"
        "from mile_ros.sim.presets import load_preset\n"
        "print(mile_ros.__file__)\n"
        "print(p.find_data('config', 'sim.yaml'))\n"
        "print(default_mapping_path('ps3'))\n"
        "print(load_preset('drawer-open-v3')['preset_file'])\n"
    )
    env = {**installed_env(install, ament=False), "COLUMNS": "1000"}  # help lines unwrapped
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    module, config, joy, preset = done.stdout.split()
    assert Path(module).is_relative_to(install)
    share = install / "share" / "mile_ros"
    assert (Path(config), Path(joy), Path(preset)) == (
        share / "config" / "sim.yaml",
        share / "config" / "joy_ps3.yaml",
        share / "sim" / "drawer-open-v3.yaml",
    )
    help_text = subprocess.run(
        [str(install / "lib" / "mile_ros" / "mile-ros"), "sim", "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert help_text.returncode == 0, help_text.stderr
    assert str(share / "config" / "sim.yaml") in help_text.stdout


def test_installed_node_runs_and_finds_its_config(install, tmp_path):
    """An installed executable starts as ``ros2 run`` would start it, and exits cleanly on SIGINT."""
    pytest.importorskip("rclpy")

    env = installed_env(install)
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
