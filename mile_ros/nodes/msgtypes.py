"""ROS 2 type name -> rclpy message class."""

from __future__ import annotations

import importlib

__all__ = ["msg_class"]


def msg_class(type_name: str) -> type:
    """``sensor_msgs/msg/JointState`` -> the class (imported on first use)."""
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
