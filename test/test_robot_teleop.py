"""The PS3 teleop through the real pygame (SDL) path, driven by an SDL virtual joystick.

In-process tests cover the reading logic; the node tests run the real node in its own process (the
virtual pad must live in the reading process) and listen over real DDS from this one.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

from mile_ros.graph.joy_mapping import load_joy_mapping
from mile_ros.robot.gamepad import Gamepad, ros_axis
from mile_ros.robot.virtual_joystick import VirtualJoystick

SDL = load_joy_mapping("sdl")
TAKEOVER = SDL.buttons["takeover"]


# -- in process ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pad():
    virtual = VirtualJoystick(axes=6, buttons=12, hats=1)
    yield virtual
    virtual.close()


def test_axis_convention_matches_joy_node():
    assert ros_axis(-32768 / 32768) == 1.0  # -32768 counts as -32767, then the sign flips: up is +
    assert ros_axis(32767 / 32768) == -1.0
    assert ros_axis(16384 / 32768) == pytest.approx(-16384 / 32767)
    assert ros_axis(0.0) == 0.0
    assert ros_axis(0.04, deadzone=0.05) == 0.0
    assert ros_axis(-0.5, deadzone=0.2) == pytest.approx((16384 - 0.2 * 32767) / (0.8 * 32767))


def test_missing_then_plug_read_unplug_replug(pad):
    reader = Gamepad(axes_count=6, buttons_count=12)
    state, events = reader.poll()
    assert not state.connected and state.axes == (0.0,) * 6 and state.buttons == (0,) * 12
    assert [e.kind for e in events] == ["missing"] and "no gamepad" in events[0].message
    assert reader.poll()[1] == []  # reported once

    pad.attach()
    state, events = reader.poll()
    assert [e.kind for e in events] == ["connected"] and state.name == "Virtual Controller"
    assert len(state.axes) == 8 and len(state.buttons) == 12  # 6 axes + 2 for the hat

    pad.set_axis(1, -32768)  # stick fully up
    pad.set_axis(0, 16384)  # half right
    pad.set_button(TAKEOVER, True)
    pad.set_hat(0, 8 | 1)  # left + up
    state, _ = reader.poll()
    assert state.axes[1] == 1.0 and state.axes[0] == pytest.approx(-16384 / 32767)
    assert state.axes[6:] == (1.0, 1.0)
    assert state.buttons[TAKEOVER] == 1 and sum(state.buttons) == 1
    np.testing.assert_allclose(SDL.action(state.axes, state.buttons)[:2],
                               [1.0, (-16384 / 32767 + SDL.dead_zone) / (1 - SDL.dead_zone)])
    assert SDL.pressed(state.buttons, "takeover")

    pad.detach()  # unplugged with the takeover held
    state, events = reader.poll()
    assert [e.kind for e in events] == ["disconnected"] and "takeover released" in events[0].message
    assert not state.connected and not any(state.buttons) and not any(state.axes)
    assert len(state.axes) == 8  # the released reading keeps the pad's sizes

    pad.attach()  # a fresh device starts released
    state, events = reader.poll()
    assert [e.kind for e in events] == ["connected"] and state.buttons[TAKEOVER] == 0
    pad.set_button(TAKEOVER, True)
    assert reader.poll()[0].buttons[TAKEOVER] == 1
    pad.set_button(TAKEOVER, False)
    pad.detach()
    reader.poll()


def test_dead_zone_through_mapping_and_reader(pad):
    pad.attach()
    try:
        reader = Gamepad()
        reader.poll()
        pad.set_axis(0, -round(0.05 * 32767))  # inside the mapping's 0.1 dead zone
        pad.set_axis(1, -round(0.5 * 32767))
        state, _ = reader.poll()
        action = SDL.action(state.axes, state.buttons)
        assert action[1] == 0.0 and action[0] == pytest.approx((0.5 - 0.1) / 0.9, abs=1e-4)
        filtered = Gamepad(deadzone=0.1)  # the joy-node dead zone on the teleop side instead
        assert filtered.poll()[0].axes[0] == 0.0
    finally:
        pad.set_axis(0, 0)
        pad.set_axis(1, 0)
        pad.detach()


def test_name_filter_skips_other_pads(pad):
    pad.attach()
    try:
        reader = Gamepad(name_contains="playstation")
        state, events = reader.poll()
        assert not state.connected and "whose name contains 'playstation'" in events[0].message
        assert Gamepad(name_contains="virtual").poll()[0].connected
    finally:
        pad.detach()


def test_bad_deadzone():
    with pytest.raises(ValueError, match="deadzone"):
        Gamepad(deadzone=1.0)


# -- the node, in its own process, over DDS -----------------------------------------------------------

class Listener:
    """Collects /teleop/joy and /teleop/status with their arrival time (time.monotonic)."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Joy
        from std_msgs.msg import String

        from mile_ros.nodes.common import qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("teleop_listener", context=self.context)
        self.joys: list[tuple[float, object]] = []
        self.statuses: list[dict] = []
        self.lock = threading.Lock()
        self.node.create_subscription(Joy, "/teleop/joy", self._on_joy, qos("reliable"))
        self.node.create_subscription(String, "/teleop/status", self._on_status, qos("latched"))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutdown race
                return

    def _on_joy(self, msg) -> None:
        with self.lock:
            self.joys.append((time.monotonic(), msg))

    def _on_status(self, msg) -> None:
        with self.lock:
            self.statuses.append(json.loads(msg.data))

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                result = predicate(self)
            if result:
                return result
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def teleop_process():
    from mile_ros.testing.virtual_pad import run_with_virtual_pad

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    domain_id = os.getpid() % 100 + 120
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_with_virtual_pad,
                       args=(child, ["-p", "joy_mapping:=sdl", "-p", "autorepeat_rate_hz:=5.0"], domain_id))
    proc.start()
    listener = Listener(domain_id)

    def command(*cmd) -> float:
        parent.send(cmd)
        if not parent.poll(30):
            raise AssertionError(f"teleop process did not answer {cmd}")
        return parent.recv()

    yield listener, command
    try:
        command("stop")
    finally:
        proc.join(timeout=20)
        if proc.is_alive():
            proc.kill()
        listener.close()
    assert proc.exitcode == 0


def test_teleop_node_over_dds(teleop_process):
    listener, command = teleop_process
    # started without a pad: the latched status says so, and released Joys keep flowing
    listener.wait_for(lambda s: any(st["state"] == "missing" for st in s.statuses), what="'missing' status")
    first = listener.wait_for(lambda s: s.joys and s.joys[-1][1], what="a released Joy")
    assert list(first.buttons) == [0] * SDL.buttons_count and list(first.axes) == [0.0] * SDL.axes_count

    command("attach")
    listener.wait_for(lambda s: s.statuses and s.statuses[-1]["state"] == "connected", what="'connected'")
    assert listener.statuses[-1]["name"] == "Virtual Controller"
    listener.wait_for(lambda s: s.joys and len(s.joys[-1][1].axes) == 8, what="a Joy with the pad's sizes")

    # takeover with the stick up: reaction from the gamepad event to the Joy arriving here
    reactions = []
    for i in range(5):
        pressed = i % 2 == 0
        count = len(listener.joys)
        t0 = command("button", TAKEOVER, int(pressed))
        arrival, msg = listener.wait_for(
            lambda s, n=count, p=pressed: next(((t, m) for t, m in s.joys[n:] if m.buttons[TAKEOVER] == p),
                                               None),
            what="the takeover change")
        reactions.append(arrival - t0)
    assert max(reactions) < 0.05, reactions  # one 20 Hz control period
    print(f"takeover reaction (pad event -> Joy received over DDS): median "
          f"{np.median(reactions) * 1e3:.1f} ms, max {max(reactions) * 1e3:.1f} ms")
    command("axis", 1, -32768)
    command("axis", 0, round(0.05 * 32767))  # inside the dead zone
    msg = listener.wait_for(lambda s: s.joys[-1][1] if s.joys[-1][1].axes[1] == 1.0 else None,
                            what="stick up")
    action = SDL.action(msg.axes, msg.buttons)
    assert action[0] == 1.0 and action[1] == 0.0 and SDL.pressed(msg.buttons, "takeover")

    # unplugged mid-takeover: status says so, takeover released, everything zero
    count = len(listener.joys)
    command("detach")
    listener.wait_for(lambda s: s.statuses[-1]["state"] == "disconnected", what="'disconnected'")
    released = listener.wait_for(
        lambda s, n=count: next((m for _, m in s.joys[n:] if not any(m.buttons)), None),
        what="a released Joy after unplugging")
    assert not any(released.axes) and not SDL.pressed(released.buttons, "takeover")

    # plugged back: reconnects and reads again
    command("attach")
    listener.wait_for(lambda s: s.statuses[-1]["state"] == "connected", what="reconnection")
    command("button", SDL.buttons["success"], 1)
    listener.wait_for(lambda s: SDL.pressed(s.joys[-1][1].buttons, "success"), what="success button")
