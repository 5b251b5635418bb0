"""mile_ros: MILE (Model-based Intervention Learning) on ROS 2."""

__version__ = "0.1.0"
