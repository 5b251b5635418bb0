"""The operator's screen: what a person running a session sees (ROS-free state and its ``rich`` view)."""
