"""``sim.launch.py`` under the real ``launch_pytest``: the installed launch file (found through the
ament index, as ``ros2 launch`` finds it) runs a short session that records an episode and trains.

Launch arguments given override the config file, and only those: the episode length comes from the
``max_episode_steps`` argument, the session's size and the epochs from the file. Where the launch
stops early (mile_ros not in the index, a node that dies) the test fails with the launch's reason at
once instead of waiting. The stack: test/launch_stack.py (skipped only where there is none at all).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from launch_stack import ROOT, launch_env, ros2_command

try:
    ros2_command()
except pytest.skip.Exception as exc:
    pytest.skip(str(exc), allow_module_level=True)

import launch_pytest
from launch.actions import IncludeLaunchDescription, RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

pytestmark = pytest.mark.slow
STEPS = 15  # the launch argument; the config file says 20
SHUTDOWNS: list[str] = []  # reasons the launch stopped, in order


@pytest.fixture(scope="module")
def ros_environment(tmp_path_factory):
    """This process's environment for the launch (launch_pytest runs it in-process, and the nodes
    inherit it): this checkout's ament prefix, a domain of its own."""
    from mile_ros.nodes.probe import unique_domain_id

    saved = dict(os.environ)
    env = launch_env()
    os.environ.clear()
    os.environ.update(env)
    os.environ.update(ROS_DOMAIN_ID=str(unique_domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    yield tmp_path_factory.mktemp("launch_sim")
    os.environ.clear()
    os.environ.update(saved)


def initial_checkpoint(folder: Path) -> Path:
    from mile_ros.learning import MileCheckpoint, build_policy
    from mile_ros.sim import make_env

    spec = make_env("drawer-open-v3").spec
    return MileCheckpoint(spec, build_policy(spec.stacked_dim, spec.act_dim, False, (32, 32))).save(
        folder / "initial.pt"
    )


def config_file(folder: Path) -> Path:
    config = yaml.safe_load((ROOT / "config" / "sim.yaml").read_text())
    for node, values in {
        "metaworld_bridge": {"max_episode_steps": 20},
        "simulated_human": {"mental_rollouts": 1},
        "trainer_node": {"epochs": 2},
        "session_manager": {"iterations": 1, "episodes": 1, "eval_episodes": 0},
    }.items():
        config[node]["ros__parameters"].update(values)
    path = folder / "sim.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@launch_pytest.fixture
def launch_description(ros_environment):
    folder = ros_environment
    from ament_index_python.packages import get_package_share_directory

    # Fails here (not in a fixture waiting forever) where mile_ros is not in the index.
    installed = Path(get_package_share_directory("mile_ros"), "launch", "sim.launch.py")
    assert installed.read_bytes() == (ROOT / "launch" / "sim.launch.py").read_bytes()
    args = {
        "run_dir": str(folder / "run"),
        "initial_checkpoint": str(initial_checkpoint(folder)),
        "config": str(config_file(folder)),
        "max_episode_steps": str(STEPS),
    }
    source = PythonLaunchDescriptionSource([FindPackageShare("mile_ros"), "/launch/sim.launch.py"])
    ready = launch_pytest.actions.ReadyToTest()

    def stopped(event, context):
        SHUTDOWNS.append(event.reason)
        return [ready]  # the test starts even when the launch stops before it is ready, and says why

    return LaunchDescription(
        [
            RegisterEventHandler(OnShutdown(on_shutdown=stopped)),
            IncludeLaunchDescription(source, launch_arguments=args.items()),
            ready,
        ]
    )


@pytest.mark.launch(fixture=launch_description)
def test_session_records_an_episode_and_trains(ros_environment):
    state_file = ros_environment / "run" / "session.json"
    deadline = time.monotonic() + 900
    # The session manager's exit stops the launch by itself (the first shutdown and its reason).
    while not SHUTDOWNS:
        if time.monotonic() > deadline:
            pytest.fail("the session did not finish within 900 s")
        time.sleep(1.0)
    assert SHUTDOWNS[0] == "session_manager finished", f"the launch stopped early: {SHUTDOWNS}"
    state = json.loads(state_file.read_text())
    assert state["config"] == {"iterations": 1, "episodes": 1, "eval_episodes": 0, "seed": 0}
    [episode] = state["episodes"]
    assert episode["steps"] == STEPS
    assert Path(episode["bag"], "metadata.yaml").is_file()
    assert Path(state["checkpoints"]["1"]).is_file()
    yield
    # After the launch has stopped: nothing else stopped it.
    assert SHUTDOWNS == ["session_manager finished"], SHUTDOWNS
