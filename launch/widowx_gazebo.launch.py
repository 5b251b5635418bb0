"""The real-robot session against interbotix's simulator instead of the arm.

``ros2 launch mile_ros widowx_gazebo.launch.py run_dir:=... initial_checkpoint:=... camera_source:=clip.mp4``

interbotix's Python API (``InterbotixManipulatorXS``, used by the driver's ``interbotix`` backend) talks
to the X-Series SDK node. Its simulated twin, started here through ``xsarm_control.launch.py
use_sim:=true``, accepts the same commands and publishes joint states, with RViz showing the arm, so the
whole session runs unchanged without hardware. interbotix's Gazebo worlds (``interbotix_xsarm_sim``) drive
the arm through ros2_control instead, which this API does not reach. The simulator has no camera: give
``camera_source`` a webcam or a video file.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PASSED_ON = (
    "params_file",
    "run_dir",
    "initial_checkpoint",
    "r3m_checkpoint",
    "camera_source",
    "encoder_device",
    "with_trainer",
    "with_teleop",
)


def generate_launch_description() -> LaunchDescription:
    robot_model = LaunchConfiguration("robot_model")
    simulator = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("interbotix_xsarm_control"), "launch", "xsarm_control.launch.py"])
        ),
        launch_arguments={
            "robot_model": robot_model,
            "use_sim": "true",
            "use_rviz": LaunchConfiguration("use_rviz"),
        }.items(),
    )
    session = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("mile_ros"), "launch", "widowx.launch.py"])
        ),
        launch_arguments={
            "backend": "interbotix",
            "robot_model": robot_model,
            **{name: LaunchConfiguration(name) for name in PASSED_ON},
        }.items(),
    )
    defaults = {
        "params_file": PathJoinSubstitution([FindPackageShare("mile_ros"), "config", "widowx.yaml"]),
        "run_dir": "runs/widowx_sim",
        "initial_checkpoint": "",
        "r3m_checkpoint": "",
        "camera_source": "0",
        "encoder_device": "auto",
        "with_trainer": "true",
        "with_teleop": "true",
    }
    declared = [
        DeclareLaunchArgument("robot_model", default_value="wx250s", description="interbotix robot model"),
        DeclareLaunchArgument("use_rviz", default_value="true", description="show the simulated arm in RViz"),
        *(
            DeclareLaunchArgument(name, default_value=defaults[name], description="passed to widowx.launch.py")
            for name in PASSED_ON
        ),
    ]
    return LaunchDescription([*declared, simulator, session])
