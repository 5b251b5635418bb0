"""One thin rclpy node per module; the logic lives in :mod:`mile_ros.graph` and :mod:`mile_ros.learning`."""
