"""Real-robot session: ``ros2 launch mile_ros widowx.launch.py run_dir:=... initial_checkpoint:=...``.

Starts the WidowX driver, webcam, R3M encoder, PS3 teleop, policy, arbitration, recorder, session manager
and (unless ``with_trainer:=false``, when ``trainer.launch.py`` runs on a GPU machine on the same
ROS_DOMAIN_ID) the trainer. The interbotix arm driver itself (``xsarm_control.launch.py``) is started
separately, or by ``widowx_gazebo.launch.py`` for interbotix's simulator. ``backend:=sim`` puts the
driver's kinematic stand-in in place of the arm, to try the graph without one. See docs/real-robot.md.

Every node's values come from ``params_file`` (default: the package's config/widowx.yaml); a per-run
argument left empty sets nothing, a given one overrides the file for the nodes it names. The launch
ends when the session manager finishes (exit 0), or when any node exits before that (exit 1, naming
the node). With ``with_teleop:=false`` the standard ``joy`` package's ``joy_node`` reads the pad; where
that package is missing the launch stops before any node starts.
"""

from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

NODES = (
    "widowx_driver",
    "webcam_node",
    "r3m_encoder",
    "ps3_teleop",
    "policy_node",
    "arbitration_node",
    "recorder_node",
    "trainer_node",
    "session_manager",
)
# Per-run launch arguments: name -> (default, description, the (node, parameter, type) it sets).
# An empty default sets nothing: the value is the parameter file's.
OVERRIDES = {
    "r3m_checkpoint": ("", "R3M's resnet50 model.pt", (("r3m_encoder", "checkpoint", "str"),)),
    "camera_source": (
        "",
        "webcam device index, /dev path, stream URL or video file",
        (("webcam_node", "source", "str"),),
    ),
    "backend": (
        "",
        "interbotix (arm or interbotix simulator) or sim (kinematic stand-in)",
        (("widowx_driver", "backend", "str"),),
    ),
    "robot_model": ("", "interbotix robot model", (("widowx_driver", "robot_model", "str"),)),
    "encoder_device": ("", "cpu, cuda or auto", (("r3m_encoder", "device", "str"),)),
    "iterations": ("", "updates", (("session_manager", "iterations", "int"),)),
    "episodes": ("", "intervention episodes per iteration", (("session_manager", "episodes", "int"),)),
    "eval_episodes": (
        "",
        "policy-alone episodes before the first and after each update",
        (("session_manager", "eval_episodes", "int"),),
    ),
    "seed": (
        "",
        "run seed: the session's episodes, the trainer",
        (("session_manager", "seed", "int"), ("trainer_node", "seed", "int")),
    ),
    "method": (
        "",
        "the method each update trains: mile or a baseline (default: the file's)",
        (("trainer_node", "method", "str"),),
    ),
    "epochs": ("", "epochs per update", (("trainer_node", "epochs", "int"),)),
    "prior_data": ("", "the initial policy's demonstrations (the prior)", (("trainer_node", "prior_data", "str"),)),
}
# Set from the run directory and the initial policy (see session_values in mile_ros.bringup).
RUN_VALUES = {
    "recorder_node": ("output_dir",),
    "trainer_node": ("bags_dir", "checkpoint_dir", "initial_checkpoint"),
    "policy_node": ("checkpoint",),
    "session_manager": ("run_dir", "initial_checkpoint"),
}
# Fixed by this launch: the node that runs the episodes is the driver.
FIXED = {"session_manager": {"bridge_node": "widowx_driver"}}
ARGUMENTS = {
    "params_file": (
        PathJoinSubstitution([FindPackageShare("mile_ros"), "config", "widowx.yaml"]),
        "parameter file of all nodes",
    ),
    "run_dir": ("runs/widowx", "the session's folder: bags, checkpoints, metrics (resumed if it exists)"),
    "initial_checkpoint": ("", "the policy of iteration 0 (obs_source r3m+ee); default on a resume: the run's"),
    "with_trainer": ("true", "run the trainer here (false: trainer.launch.py on another machine)"),
    "with_teleop": ("true", "run ps3_teleop (false: the joy package's joy_node, remapped to /teleop/joy)"),
    "use_sim_time": ("", "true with a simulator that publishes /clock (every node; default: the file's)"),
    **{name: spec[:2] for name, spec in OVERRIDES.items()},
}


def nodes(context: LaunchContext) -> list:
    from mile_ros import bringup

    with_trainer = bringup.flag(context, "with_trainer")
    with_teleop = bringup.flag(context, "with_teleop")
    if not with_teleop:
        bringup.require_package("joy", "with_teleop:=false runs the joy package's joy_node")
    params = bringup.parameter_file(context, "params_file")
    run = bringup.session_values(context, RUN_VALUES)
    given = bringup.overrides(context, {name: spec[2] for name, spec in OVERRIDES.items()})
    every = bringup.overrides(context, {"use_sim_time": (("every node", "use_sim_time", "bool"),)})
    sim_time = every.get("every node", {})
    started = [
        name for name in NODES if (name != "ps3_teleop" or with_teleop) and (name != "trainer_node" or with_trainer)
    ]
    actions = [
        bringup.mile_node(
            name,
            [
                {
                    **bringup.node_section(params, name),
                    **sim_time,
                    **run.get(name, {}),
                    **FIXED.get(name, {}),
                    **given.get(name, {}),
                }
            ],
            ends_session=name == "session_manager",
        )
        for name in started
    ]
    if not with_teleop:
        actions.append(
            Node(
                package="joy",
                executable="joy_node",
                name="joy_node",
                output="screen",
                parameters=[{"autorepeat_rate": 20.0, "deadzone": 0.0, **sim_time}],
                namespace=LaunchConfiguration("namespace", default=""),
                remappings=[("joy", "teleop/joy")],
                sigterm_timeout=LaunchConfiguration("sigterm_timeout"),
                on_exit=bringup.on_exit("joy_node", ends_session=False),
            )
        )
    return actions


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
