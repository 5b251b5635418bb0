"""The simulated intervention session: Metaworld bridge, policy, arbitration, simulated human,
recorder, trainer and session manager, with config/sim.yaml.

    ros2 launch mile_ros sim.launch.py run_dir:=/tmp/mile_run initial_checkpoint:=/tmp/initial.pt \
        task:=drawer-open-v3 iterations:=5 episodes:=1

Make the initial policy with ``mile-ros init-policy --task drawer-open-v3 --out /tmp/initial.pt``
(``mile-ros sim`` does it by itself); give its demonstrations (``/tmp/initial-demos.npz``) as
``prior_data`` to train with the prior as ``mile-ros sim`` does. A run directory that exists is
resumed, with its own initial policy when ``initial_checkpoint`` is not given.

Every node's values come from ``config`` (default: the package's config/sim.yaml); a per-run
argument left empty sets nothing, a given one overrides the file for the nodes it names. The launch
ends when the session manager finishes (exit 0), or when any node exits before that (exit 1, naming
the node).
"""

from launch.actions import OpaqueFunction
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

NODES = (
    "metaworld_bridge",
    "policy_node",
    "arbitration_node",
    "simulated_human",
    "recorder_node",
    "trainer_node",
    "session_manager",
)
# Per-run launch arguments: name -> (default, description, the (node, parameter, type) it sets).
# An empty default sets nothing: the value is the config file's.
OVERRIDES = {
    "task": (
        "",
        "Metaworld v3 task (default: the config's)",
        (("metaworld_bridge", "task", "str"), ("simulated_human", "task", "str"), ("session_manager", "task", "str")),
    ),
    "seed": (
        "",
        "run seed: the session's episodes, the simulated human, the trainer (default: the config's)",
        (("session_manager", "seed", "int"), ("simulated_human", "seed", "int"), ("trainer_node", "seed", "int")),
    ),
    "iterations": ("", "updates (default: the config's)", (("session_manager", "iterations", "int"),)),
    "episodes": ("", "intervention episodes per iteration", (("session_manager", "episodes", "int"),)),
    "eval_episodes": (
        "",
        "policy-alone episodes before the first and after each update",
        (("session_manager", "eval_episodes", "int"),),
    ),
    "max_episode_steps": (
        "",
        "episode length; 0: the task's 500 steps",
        (("metaworld_bridge", "max_episode_steps", "int"),),
    ),
    "method": (
        "",
        "the method each update trains: mile or a baseline (default: the file's)",
        (("trainer_node", "method", "str"),),
    ),
    "epochs": ("", "epochs per update", (("trainer_node", "epochs", "int"),)),
    "mental_rollouts": (
        "",
        "rollouts the simulated human's mental model is fit on",
        (("simulated_human", "mental_rollouts", "int"),),
    ),
    "render": (
        "",
        "render and record camera images (true/false)",
        (("metaworld_bridge", "render", "bool"), ("recorder_node", "record_camera", "bool")),
    ),
    "prior_data": (
        "",
        "the initial policy's demonstrations (mile-ros init-policy writes <stem>-demos.npz beside it)",
        (("trainer_node", "prior_data", "str"),),
    ),
}
# Set from the run directory and the initial policy (see session_values in mile_ros.bringup).
RUN_VALUES = {
    "recorder_node": ("output_dir",),
    "trainer_node": ("bags_dir", "checkpoint_dir", "initial_checkpoint"),
    "policy_node": ("checkpoint",),
    "simulated_human": ("checkpoint",),
    "session_manager": ("run_dir", "initial_checkpoint"),
}
ARGUMENTS = {
    "run_dir": ("mile_run", "session folder: bags, checkpoints, metrics (an existing one is resumed)"),
    "initial_checkpoint": ("", "the initial policy (mile-ros init-policy); default on a resume: the run's"),
    "config": (
        PathJoinSubstitution([FindPackageShare("mile_ros"), "config", "sim.yaml"]),
        "parameter file of all nodes",
    ),
    **{name: spec[:2] for name, spec in OVERRIDES.items()},
}


def nodes(context: LaunchContext) -> list:
    from mile_ros import bringup

    config = bringup.parameter_file(context, "config")
    run = bringup.session_values(context, RUN_VALUES)
    given = bringup.overrides(context, {name: spec[2] for name, spec in OVERRIDES.items()})
    return [
        bringup.mile_node(
            name,
            [{**bringup.node_section(config, name), **run.get(name, {}), **given.get(name, {})}],
            ends_session=name == "session_manager",
        )
        for name in NODES
    ]


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
