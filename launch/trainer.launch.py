"""The trainer alone, e.g. on a GPU workstation next to the robot's graph (same ROS_DOMAIN_ID).

    ros2 launch mile_ros trainer.launch.py params_file:=/data/widowx.yaml bags_dir:=/data/run/bags \
        checkpoint_dir:=/data/run/checkpoints initial_checkpoint:=/data/initial.pt

Its values come from ``params_file`` (default: the package's config/sim.yaml; on the robot's
trainer machine give the robot's file, e.g. config/widowx.yaml); an argument left empty sets nothing,
a given one overrides the file. The launch ends when the trainer exits (exit 1 unless the launch
was stopping, e.g. on Ctrl-C).
"""

from launch.actions import OpaqueFunction
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

# launch argument -> (default, description, the (node, parameter, type) it sets); empty: the file's.
OVERRIDES = {
    "bags_dir": ("", "folder of episode bags, searched recursively", (("trainer_node", "bags_dir", "str"),)),
    "checkpoint_dir": ("", "where new checkpoints are written", (("trainer_node", "checkpoint_dir", "str"),)),
    "initial_checkpoint": (
        "",
        "the policy the first update starts from",
        (("trainer_node", "initial_checkpoint", "str"),),
    ),
    "prior_data": ("", "the initial policy's demonstrations (the prior)", (("trainer_node", "prior_data", "str"),)),
    "method": (
        "",
        "the method each update trains: mile or a baseline (default: the file's)",
        (("trainer_node", "method", "str"),),
    ),
    "epochs": ("", "epochs per update", (("trainer_node", "epochs", "int"),)),
    "seed": ("", "base training seed", (("trainer_node", "seed", "int"),)),
}
ARGUMENTS = {
    "params_file": (
        PathJoinSubstitution([FindPackageShare("mile_ros"), "config", "sim.yaml"]),
        "parameter file with a trainer_node section",
    ),
    **{name: spec[:2] for name, spec in OVERRIDES.items()},
}


def nodes(context: LaunchContext) -> list:
    from mile_ros import bringup

    params = bringup.parameter_file(context, "params_file")
    given = bringup.overrides(context, {name: spec[2] for name, spec in OVERRIDES.items()})
    section = bringup.node_section(params, "trainer_node")
    return [bringup.mile_node("trainer_node", [{**section, **given.get("trainer_node", {})}])]


def generate_launch_description() -> LaunchDescription:
    from mile_ros import bringup

    return LaunchDescription(
        [
            *bringup.declare(ARGUMENTS),
            bringup.namespace_argument(),
            bringup.sigterm_timeout_argument(),
            OpaqueFunction(function=nodes),
        ]
    )
