"""The simulated intervention session: Metaworld bridge, policy, arbitration, simulated human,
recorder, trainer and session manager, with config/sim.yaml.

    ros2 launch mile_ros sim.launch.py task:=drawer-open-v3 run_dir:=/tmp/mile_run \
        initial_checkpoint:=/tmp/initial.pt iterations:=5 episodes:=1

Make the initial policy with ``mile-ros init-policy --task drawer-open-v3 --out /tmp/initial.pt``
(``mile-ros sim`` does it by itself). The whole launch shuts down when the session manager
finishes, or when any node exits (the reason names it).
"""

from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGUMENTS = {
    "task": ("drawer-open-v3", "Metaworld v3 task"),
    "run_dir": ("mile_run", "session folder: bags, checkpoints, metrics (an existing one is resumed)"),
    "initial_checkpoint": ("", "the initial policy (mile-ros init-policy --task TASK --out FILE)"),
    "iterations": ("5", "MILE updates"),
    "episodes": ("1", "intervention episodes per iteration"),
    "eval_episodes": ("10", "policy-alone episodes before the first and after each update"),
    "max_episode_steps": ("0", "episode length; 0: the task's 500 steps"),
    "epochs": ("300", "MILE epochs per update"),
    "mental_rollouts": ("20", "rollouts the simulated human's mental model is fit on"),
    "render": ("false", "render and record camera images"),
    "config": ("", "parameter file (default: the package's config/sim.yaml)"),
}


def generate_launch_description() -> LaunchDescription:
    arg = {name: LaunchConfiguration(name) for name in ARGUMENTS}
    default_config = PathJoinSubstitution([FindPackageShare("mile_ros"), "config", "sim.yaml"])
    declared = [DeclareLaunchArgument(n, default_value=d, description=text) for n, (d, text) in ARGUMENTS.items()]
    declared[-1] = DeclareLaunchArgument("config", default_value=default_config, description=ARGUMENTS["config"][1])
    config = arg["config"]
    run_dir = arg["run_dir"]

    def typed(name: str, kind: type) -> ParameterValue:
        return ParameterValue(arg[name], value_type=kind)

    per_node = {
        "metaworld_bridge": {
            "task": arg["task"],
            "render": typed("render", bool),
            "max_episode_steps": typed("max_episode_steps", int),
        },
        "policy_node": {"checkpoint": arg["initial_checkpoint"]},
        "arbitration_node": {},
        "simulated_human": {
            "task": arg["task"],
            "checkpoint": arg["initial_checkpoint"],
            "mental_rollouts": typed("mental_rollouts", int),
        },
        "recorder_node": {
            "output_dir": PathJoinSubstitution([run_dir, "bags"]),
            "record_camera": typed("render", bool),
        },
        "trainer_node": {
            "bags_dir": PathJoinSubstitution([run_dir, "bags"]),
            "checkpoint_dir": PathJoinSubstitution([run_dir, "checkpoints"]),
            "initial_checkpoint": arg["initial_checkpoint"],
            "epochs": typed("epochs", int),
        },
        "session_manager": {
            "run_dir": run_dir,
            "task": arg["task"],
            "initial_checkpoint": arg["initial_checkpoint"],
            "iterations": typed("iterations", int),
            "episodes": typed("episodes", int),
            "eval_episodes": typed("eval_episodes", int),
        },
    }
    nodes = [
        Node(
            package="mile_ros",
            executable=name,
            name=name,
            parameters=[config, values],
            output="screen",
            emulate_tty=True,
            # The session is done when the manager exits; any other exit is a failure of that node.
            on_exit=Shutdown(reason="session finished" if name == "session_manager" else f"node {name} exited"),
        )
        for name, values in per_node.items()
    ]
    return LaunchDescription([*declared, *nodes])
