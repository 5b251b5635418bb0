"""Real-robot session: ``ros2 launch mile_ros widowx.launch.py run_dir:=... initial_checkpoint:=...``.

Starts the WidowX driver, webcam, R3M encoder, PS3 teleop, policy, arbitration, recorder, session manager
and (unless ``with_trainer:=false``, when ``trainer.launch.py`` runs on a GPU machine on the same
ROS_DOMAIN_ID) the trainer. The interbotix arm driver itself (``xsarm_control.launch.py``) is started
separately, or by ``widowx_gazebo.launch.py`` for interbotix's simulator. See docs/real-robot.md.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGUMENTS = (
    (
        "params_file",
        PathJoinSubstitution([FindPackageShare("mile_ros"), "config", "widowx.yaml"]),
        "parameter file of all nodes",
    ),
    ("run_dir", "runs/widowx", "the session's folder: bags, checkpoints, metrics (resumed if it exists)"),
    ("initial_checkpoint", "", "the policy of iteration 0 (obs_source r3m+ee)"),
    ("r3m_checkpoint", "", "R3M's resnet50 model.pt"),
    ("camera_source", "0", "webcam device index, /dev path, stream URL or video file"),
    ("backend", "interbotix", "interbotix (arm or interbotix simulator) or sim (kinematic stand-in)"),
    ("robot_model", "wx250s", "interbotix robot model"),
    ("encoder_device", "auto", "cpu, cuda or auto"),
    ("with_trainer", "true", "run the trainer here (false: trainer.launch.py on another machine)"),
    ("with_teleop", "true", "run ps3_teleop (false: run the standard joy node remapped to /teleop/joy)"),
    ("use_sim_time", "false", "true with a simulator that publishes /clock"),
)


def generate_launch_description() -> LaunchDescription:
    arg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    params = arg["params_file"]
    sim_time = {"use_sim_time": ParameterValue(arg["use_sim_time"], value_type=bool)}

    def node(executable: str, extra: dict | None = None, **kwargs) -> Node:
        return Node(
            package="mile_ros",
            executable=executable,
            name=executable,
            output="screen",
            emulate_tty=True,
            parameters=[params, sim_time, extra or {}],
            **kwargs,
        )

    run_dir = arg["run_dir"]
    nodes = [
        node("widowx_driver", {"backend": arg["backend"], "robot_model": arg["robot_model"]}),
        node("webcam_node", {"source": ParameterValue(arg["camera_source"], value_type=str)}),
        node("r3m_encoder", {"checkpoint": arg["r3m_checkpoint"], "device": arg["encoder_device"]}),
        node("ps3_teleop", condition=IfCondition(arg["with_teleop"])),
        Node(
            package="joy",
            executable="joy_node",
            name="joy_node",
            output="screen",
            parameters=[{"autorepeat_rate": 20.0, "deadzone": 0.0}],
            remappings=[("/joy", "/teleop/joy")],
            condition=UnlessCondition(arg["with_teleop"]),
        ),
        node("policy_node", {"checkpoint": arg["initial_checkpoint"]}),
        node("arbitration_node"),
        node("recorder_node", {"output_dir": PathJoinSubstitution([run_dir, "bags"])}),
        node(
            "trainer_node",
            {
                "bags_dir": PathJoinSubstitution([run_dir, "bags"]),
                "checkpoint_dir": PathJoinSubstitution([run_dir, "checkpoints"]),
                "initial_checkpoint": arg["initial_checkpoint"],
            },
            condition=IfCondition(arg["with_trainer"]),
        ),
        # bridge_node: the session manager sets per-episode parameters on the arm node (the driver here).
        node(
            "session_manager",
            {
                "run_dir": run_dir,
                "initial_checkpoint": arg["initial_checkpoint"],
                "use_simulated_human": False,
                "bridge_node": "widowx_driver",
            },
        ),
    ]
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS
    ]
    return LaunchDescription([*declared, *nodes])
