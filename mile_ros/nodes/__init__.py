"""One thin rclpy node per module; the logic lives in :mod:`mile_ros.graph` and :mod:`mile_ros.learning`.

``NODE_GROUPS`` is the one list of nodes: setup.py reads it (as a literal, without importing the package,
so building needs neither rclpy nor torch) to make one console script per node, and ``mile-ros sim``
starts the ``sim`` group. Keep it a plain literal.
"""

NODE_GROUPS = {
    # The simulated session's graph, which `mile-ros sim` and launch/sim.launch.py start.
    "sim": (
        "metaworld_bridge",
        "policy_node",
        "arbitration_node",
        "simulated_human",
        "recorder_node",
        "trainer_node",
    ),
    "session": ("session_manager",),
    # The real-robot nodes of launch/widowx.launch.py (it also starts policy, arbitration, recorder, session).
    "robot": ("widowx_driver", "webcam_node", "r3m_encoder", "ps3_teleop"),
    # Optional: the trainer host's bag mirror (docs/real-robot.md) and the Foxglove live view (docs/ecosystem.md).
    "tools": ("bag_mirror", "foxglove_bridge"),
}
NODES = tuple(name for group in NODE_GROUPS.values() for name in group)
SESSION_NODE = NODE_GROUPS["session"][0]
