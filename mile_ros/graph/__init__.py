"""ROS-free logic of the node graph: topics, gamepad mapping, arbitration, bags, datasets, sessions.

The rclpy nodes in :mod:`mile_ros.nodes` are thin shells over these modules, which import no rclpy
so that they are unit-testable and usable offline (``mile-ros train --bags``).
"""
