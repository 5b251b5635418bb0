"""The real-robot session against interbotix's simulator instead of the arm.

``ros2 launch mile_ros widowx_gazebo.launch.py run_dir:=... initial_checkpoint:=... camera_source:=clip.mp4``
(any argument of widowx.launch.py; ``backend`` is ``interbotix`` here)

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


def generate_launch_description() -> LaunchDescription:
    robot_model = LaunchConfiguration("robot_model")
    # First: where interbotix is missing the launch stops here, before any mile_ros node starts.
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
    # widowx.launch.py's other arguments (run_dir, initial_checkpoint, camera_source, ...) reach it as
    # given on the command line, with its own defaults: they are not declared twice.
    session = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("mile_ros"), "launch", "widowx.launch.py"])
        ),
        launch_arguments={"backend": "interbotix", "robot_model": robot_model}.items(),
    )
    declared = [
        DeclareLaunchArgument("robot_model", default_value="wx250s", description="interbotix robot model"),
        DeclareLaunchArgument("use_rviz", default_value="true", description="show the simulated arm in RViz"),
    ]
    return LaunchDescription([*declared, simulator, session])
