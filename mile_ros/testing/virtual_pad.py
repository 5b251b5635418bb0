"""A ps3_teleop node whose gamepad is an SDL virtual joystick, driven from another process.

For tests, benchmarks and demos without a pad (``test_robot_teleop``, ``test_robot_graph``,
``mile-ros bench takeover``): SDL's virtual device must live in the process that reads it, so the
node and the pad run together in a child process and take their orders through a Pipe.
"""

from __future__ import annotations

__all__ = ["run_with_virtual_pad"]


def run_with_virtual_pad(conn, ros_args: list[str], domain_id: int, attach: bool = False) -> None:
    """A teleop node process whose pad is an SDL virtual joystick driven through ``conn`` (a Pipe end).

    For tests, benchmarks and demos without a pad: the virtual device must live in the reading process.
    Commands are tuples: ``("attach",)``, ``("detach",)``, ``("axis", i, raw)``, ``("button", i, 0|1)``,
    ``("hat", i, mask)``, ``("stop",)``; each is answered with the ``time.monotonic()`` just after it
    took effect (the reaction clock's start).
    """
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from mile_ros.nodes.ps3_teleop import TeleopNode
    from mile_ros.robot.virtual_joystick import VirtualJoystick

    pad = VirtualJoystick(axes=6, buttons=12, hats=1)
    if attach:
        pad.attach()
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", *ros_args], context=context, domain_id=domain_id)
    executor = SingleThreadedExecutor(context=context)
    node = TeleopNode(context=context)
    executor.add_node(node)
    actions = {
        "attach": pad.attach,
        "detach": pad.detach,
        "axis": pad.set_axis,
        "button": pad.set_button,
        "hat": pad.set_hat,
    }
    running = True

    def serve() -> None:  # runs on the executor's thread, like the pad polling: no SDL cross-thread use
        nonlocal running
        while conn.poll():
            name, *args = conn.recv()
            if name == "stop":
                running = False
                conn.send(time.monotonic())
                return
            actions[name](*args)
            conn.send(time.monotonic())

    node.create_timer(0.002, serve)
    try:
        while running and context.ok():
            executor.spin_once(timeout_sec=0.05)
    finally:
        node.destroy_node()
        executor.shutdown()
        context.try_shutdown()
        pad.close()
