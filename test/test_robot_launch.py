"""The real-robot launch files and config/widowx.yaml against the nodes they start, read without the
launch packages: every executable exists and every parameter they set is one the node declares.
test_ros2_launch.py runs widowx.launch.py (backend:=sim) and widowx_gazebo.launch.py under ros2 launch.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
# Parameters the launch file may set ahead of the node declaring them (undeclared ones are ignored by
# rclpy): none now.
PENDING: set[tuple[str, str]] = set()


def declared(node: str) -> set[str]:
    module = importlib.import_module(f"mile_ros.nodes.{node}")
    return {p.name for p in module.PARAMETERS} | {"use_sim_time"}


def setup_nodes() -> set[str]:
    """The nodes the installed package has console scripts for (what ``ros2 run`` finds)."""
    from importlib.metadata import entry_points

    return {e.name for e in entry_points(group="console_scripts") if e.value.startswith("mile_ros.nodes.")}


def launch_nodes(path: Path) -> dict[str, set[str]]:
    """executable -> parameter names the launch file sets itself (its tables, see test_launch_files)."""
    from test_launch_files import tables

    t = tables(path)
    found: dict[str, set[str]] = {name: set() for name in t["NODES"]}
    for *_, targets in t["OVERRIDES"].values():
        for node, parameter, _ in targets:
            found[node].add(parameter)
    for node, names in {**t["RUN_VALUES"], **t["FIXED"]}.items():
        found[node] |= set(names)
    return found


@pytest.mark.parametrize("name", ["widowx.launch.py", "widowx_gazebo.launch.py"])
def test_launch_files_compile_and_define_entry_point(name):
    tree = ast.parse((LAUNCH / name).read_text())
    functions = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    compile((LAUNCH / name).read_text(), name, "exec")


def test_widowx_launch_starts_every_node_with_declared_parameters():
    from test_launch_files import check_launch_tables

    check_launch_tables(LAUNCH / "widowx.launch.py")
    nodes = launch_nodes(LAUNCH / "widowx.launch.py")
    expected = {
        "widowx_driver",
        "webcam_node",
        "r3m_encoder",
        "ps3_teleop",
        "policy_node",
        "arbitration_node",
        "recorder_node",
        "trainer_node",
        "session_manager",
    }
    assert set(nodes) == expected
    assert expected <= setup_nodes()
    for exe, keys in nodes.items():
        unknown = {k for k in keys - declared(exe) if (exe, k) not in PENDING}
        assert not unknown, f"{exe}: launch sets undeclared parameters {unknown}"


def test_widowx_yaml_matches_declared_parameters():
    config = yaml.safe_load((ROOT / "config" / "widowx.yaml").read_text())
    assert set(config) == set(launch_nodes(LAUNCH / "widowx.launch.py"))
    for node, section in config.items():
        keys = set(section["ros__parameters"])
        unknown = keys - declared(node)
        assert not unknown, f"{node}: config/widowx.yaml sets undeclared parameters {unknown}"
    driver = config["widowx_driver"]["ros__parameters"]
    lo, hi = driver["workspace_min"], driver["workspace_max"]
    assert all(a < b for a, b in zip(lo, hi)) and driver["max_motion_m"] >= driver["max_step_m"]
    assert config["policy_node"]["ros__parameters"]["obs_source"] == "r3m+ee"
    assert config["session_manager"]["ros__parameters"]["use_simulated_human"] is False


def test_yaml_values_build_the_safety_config():
    from mile_ros.robot.safety import SafetyConfig

    p = yaml.safe_load((ROOT / "config" / "widowx.yaml").read_text())["widowx_driver"]["ros__parameters"]
    SafetyConfig(
        workspace_min=tuple(p["workspace_min"]),
        workspace_max=tuple(p["workspace_max"]),
        max_step_m=p["max_step_m"],
        max_motion_m=p["max_motion_m"],
        command_timeout_s=p["command_timeout_s"],
    )
