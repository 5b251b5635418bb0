"""Launch files and config/sim.yaml agree with the nodes (checked without the launch packages)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def node_params(node: str) -> set[str]:
    module = importlib.import_module(f"mile_ros.nodes.{node}")
    return {p.name for p in module.PARAMETERS} | {"use_sim_time"}


def launch_nodes(path: Path) -> dict[str, set[str]]:
    """``per_node`` of sim.launch.py: node name -> parameter names it sets."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "per_node":
            return {k.value: {kk.value for kk in v.keys} for k, v in zip(node.value.keys, node.value.values)}
    raise AssertionError(f"{path} has no per_node table")


def test_sim_launch_starts_the_same_nodes_as_mile_ros_sim():
    from mile_ros.nodes import NODE_GROUPS

    per_node = launch_nodes(ROOT / "launch" / "sim.launch.py")
    assert set(per_node) == {*NODE_GROUPS["sim"], *NODE_GROUPS["session"]}
    for node, names in per_node.items():
        assert names <= node_params(node), (
            f"sim.launch.py sets unknown parameters of {node}: {names - node_params(node)}"
        )


def test_sim_yaml_sets_only_declared_parameters():
    config = yaml.safe_load((ROOT / "config" / "sim.yaml").read_text())
    for node, section in config.items():
        names = set(section["ros__parameters"])
        assert names <= node_params(node), f"config/sim.yaml: {node} has no parameters {names - node_params(node)}"


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
        assert names <= node_params(node), f"mile-ros sim sets unknown parameters of {node}"


def test_launch_files_compile():
    for path in (ROOT / "launch").glob("*.launch.py"):
        compile(path.read_text(), str(path), "exec")
        assert "def generate_launch_description" in path.read_text()
