"""The trainer alone, e.g. on a GPU workstation next to the robot's graph (same ROS_DOMAIN_ID).

    ros2 launch mile_ros trainer.launch.py bags_dir:=/data/run/bags \
        checkpoint_dir:=/data/run/checkpoints initial_checkpoint:=/data/initial.pt
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    names = {
        "bags_dir": ("bags", "folder of episode bags (searched recursively)"),
        "checkpoint_dir": ("checkpoints", "where new checkpoints are written"),
        "initial_checkpoint": ("", "the policy the first update starts from"),
        "epochs": ("300", "MILE epochs per update"),
    }
    config = PathJoinSubstitution([FindPackageShare("mile_ros"), "config", "sim.yaml"])
    arg = {n: LaunchConfiguration(n) for n in names}
    return LaunchDescription(
        [
            *[DeclareLaunchArgument(n, default_value=d, description=t) for n, (d, t) in names.items()],
            Node(
                package="mile_ros",
                executable="trainer_node",
                name="trainer_node",
                output="screen",
                parameters=[
                    config,
                    {
                        "bags_dir": arg["bags_dir"],
                        "checkpoint_dir": arg["checkpoint_dir"],
                        "initial_checkpoint": arg["initial_checkpoint"],
                        "epochs": ParameterValue(arg["epochs"], value_type=int),
                    },
                ],
            ),
        ]
    )
