"""Launch files and config/sim.yaml agree with the nodes (read without the launch packages; running
them under ``ros2 launch`` is test_ros2_launch.py and test_launch_sim.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def node_params(node: str) -> dict[str, Any]:
    """Parameter name -> its Param (or None for use_sim_time) as the node declares it."""
    module = importlib.import_module(f"mile_ros.nodes.{node}")
    return {p.name: p for p in module.PARAMETERS} | {"use_sim_time": None}


def tables(path: Path) -> dict[str, Any]:
    """The module-level literal tables of a launch file (NODES, OVERRIDES, RUN_VALUES, FIXED)."""
    found = {}
    for stmt in ast.parse(path.read_text()).body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            if name in ("NODES", "OVERRIDES", "RUN_VALUES", "FIXED"):
                found[name] = ast.literal_eval(stmt.value)
    return found


def check_launch_tables(path: Path) -> dict[str, Any]:
    """Every parameter a launch file sets is declared by its node, with a matching type; every per-run
    argument defaults to empty, so that the parameter file, not the launch file, holds the defaults."""
    t = tables(path)
    nodes = set(t.get("NODES", ())) | {n for *_, targets in t["OVERRIDES"].values() for n, _, _ in targets}
    for argument, (default, description, targets) in t["OVERRIDES"].items():
        assert default == "", f"{path.name}: {argument} defaults to {default!r}: it would override the file"
        assert description
        for node, parameter, kind in targets:
            declared = node_params(node)
            assert parameter in declared, f"{path.name}: {argument} sets {node}.{parameter}, which it does not declare"
            param = declared[parameter]
            if param is not None:
                default_type = param.default if isinstance(param.default, type) else type(param.default)
                assert TYPES[kind] is default_type or (kind == "float" and default_type is int), (
                    f"{path.name}: {argument} sets {node}.{parameter} as {kind}, the node declares {default_type}"
                )
    for node, names in {**t.get("RUN_VALUES", {}), **t.get("FIXED", {})}.items():
        assert node in nodes
        unknown = set(names) - set(node_params(node))
        assert not unknown, f"{path.name}: sets undeclared parameters {unknown} of {node}"
    return t


def test_sim_launch_starts_the_same_nodes_as_mile_ros_sim_with_declared_parameters():
    from mile_ros.nodes import NODE_GROUPS

    t = check_launch_tables(ROOT / "launch" / "sim.launch.py")
    assert set(t["NODES"]) == {*NODE_GROUPS["sim"], *NODE_GROUPS["session"]}


def test_trainer_launch_sets_declared_trainer_parameters():
    t = check_launch_tables(ROOT / "launch" / "trainer.launch.py")
    assert {node for *_, targets in t["OVERRIDES"].values() for node, _, _ in targets} == {"trainer_node"}


def test_sim_yaml_sets_only_declared_parameters():
    config = yaml.safe_load((ROOT / "config" / "sim.yaml").read_text())
    for node, section in config.items():
        names = set(section["ros__parameters"])
        assert names <= set(node_params(node)), (
            f"config/sim.yaml: {node} has no parameters {names - set(node_params(node))}"
        )


def test_mile_ros_sim_run_params_are_declared(tmp_path):
    import argparse

    from mile_ros.cli.sim import run_params

    args = argparse.Namespace(
        task="drawer-open-v3",
        render=True,
        max_episode_steps=10,
        mental_rollouts=2,
        seed=1,
        epochs=3,
        iterations=2,
        episodes=1,
        eval_episodes=1,
    )
    for node, section in run_params(args, tmp_path, tmp_path / "init.pt").items():
        names = set(section["ros__parameters"])
        assert names <= set(node_params(node)), f"mile-ros sim sets unknown parameters of {node}"


def test_launch_files_compile():
    for path in (ROOT / "launch").glob("*.launch.py"):
        compile(path.read_text(), str(path), "exec")
        assert "def generate_launch_description" in path.read_text()
