"""Reading a gamepad through pygame (SDL) the way ROS 2's ``joy`` node reports it; survives unplugging.

Conventions copied from the ``joy`` node (ros-drivers/joystick_drivers, SDL2 version) so either can feed
``/teleop/joy``: axes in SDL order, each raw SDL value ``r`` in [-32768, 32767] reported as
``-r / 32767`` (``-32768`` counts as ``-32767``; the sign flip makes stick up and left positive), then
the smooth dead zone ``(|v| - dz) / (1 - dz)``; each hat appends two axes (left = +1, up = +1);
buttons in SDL order as 0/1.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

__all__ = ["Gamepad", "PadEvent", "PadState", "ros_axis"]

SDL_AXIS_MAX = 32767


def ros_axis(sdl_value: float, deadzone: float = 0.0) -> float:
    """The ``joy`` node's axis value for pygame's reading ``sdl_value`` (= raw / 32768)."""
    raw = max(-SDL_AXIS_MAX, min(SDL_AXIS_MAX, round(sdl_value * 32768)))
    magnitude = abs(raw) - deadzone * SDL_AXIS_MAX
    if magnitude <= 0:
        return 0.0
    value = magnitude / ((1.0 - deadzone) * SDL_AXIS_MAX)
    return -value if raw > 0 else value


@dataclass(frozen=True)
class PadState:
    """What the pad reads now; all released when no pad is connected."""

    connected: bool
    name: str
    axes: tuple[float, ...]
    buttons: tuple[int, ...]
    read_time: float  # time.monotonic() of the reading


@dataclass(frozen=True)
class PadEvent:
    """A change of connection: ``connected``, ``disconnected`` or ``missing`` (none at start-up)."""

    kind: str
    name: str
    message: str
    time: float = field(default_factory=time.monotonic)


class Gamepad:
    """One SDL joystick, chosen by index among those present (optionally by a name substring).

    SDL's event queue is per process: use one polling reader per process, or an unplug event drained by
    another reader goes unnoticed.
    """

    def __init__(self, device_index: int = 0, name_contains: str = "", deadzone: float = 0.0,
                 axes_count: int = 0, buttons_count: int = 0) -> None:
        """``axes_count``/``buttons_count``: size of the all-released reading before a pad is seen."""
        if not 0.0 <= deadzone < 1.0:
            raise ValueError(f"deadzone must lie in [0, 1), got {deadzone}")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: the event queue needs a video driver
        os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")  # read even without window focus
        import pygame

        self._pg = pygame
        pygame.display.init()
        pygame.joystick.init()
        self.device_index, self.name_contains, self.deadzone = device_index, name_contains.lower(), deadzone
        self._joystick = None
        self._name = ""
        self._sizes = (axes_count, buttons_count)
        self._started = False
        self._rescan = True
        self._count = -1

    @property
    def connected(self) -> bool:
        return self._joystick is not None

    @property
    def name(self) -> str:
        return self._name

    def poll(self) -> tuple[PadState, list[PadEvent]]:
        """Drain SDL's events, follow plugging and unplugging, and read the pad."""
        events: list[PadEvent] = []
        pg = self._pg
        pg.event.pump()  # also keeps SDL's joystick state current
        for event in pg.event.get((pg.JOYDEVICEADDED, pg.JOYDEVICEREMOVED), pump=False):
            self._rescan = True  # look for a pad only when the set of devices changed
            if event.type == pg.JOYDEVICEREMOVED and self._joystick is not None \
                    and event.instance_id == self._joystick.get_instance_id():
                events.append(PadEvent("disconnected", self._name,
                                       f"gamepad '{self._name}' disconnected: takeover released, arm holds; "
                                       "waiting for it to come back"))
                self._joystick = None
        pg.event.clear(pump=False)  # axis/button events are not needed: the state is read directly
        count = pg.joystick.get_count()  # also catches changes whose events another reader drained
        if count != self._count:
            self._count, self._rescan = count, True
        if self._joystick is None and (self._rescan or not self._started):
            self._rescan = False
            opened = self._open()
            if opened is not None:
                events.append(opened)
            elif not self._started:
                events.append(PadEvent("missing", "", self.missing_message()))
        self._started = True
        return self.read(), events

    def read(self) -> PadState:
        now = time.monotonic()
        joystick = self._joystick
        if joystick is None:
            axes_count, buttons_count = self._sizes
            return PadState(False, "", (0.0,) * axes_count, (0,) * buttons_count, now)
        axes = [ros_axis(joystick.get_axis(i), self.deadzone) for i in range(joystick.get_numaxes())]
        for h in range(joystick.get_numhats()):
            x, y = joystick.get_hat(h)
            axes += [float(-x), float(y)]
        buttons = tuple(int(joystick.get_button(b)) for b in range(joystick.get_numbuttons()))
        return PadState(True, self._name, tuple(axes), buttons, now)

    def missing_message(self) -> str:
        wanted = f" whose name contains '{self.name_contains}'" if self.name_contains else ""
        return (f"no gamepad{wanted} at index {self.device_index} (pygame sees "
                f"{self._pg.joystick.get_count()}): plug it in (USB, or pair it over Bluetooth) - "
                "the arm holds and takeover stays released until it appears")

    def close(self) -> None:
        self._joystick = None

    def _open(self) -> PadEvent | None:
        pg = self._pg
        matches = [i for i in range(pg.joystick.get_count())
                   if self.name_contains in pg.joystick.Joystick(i).get_name().lower()]
        if len(matches) <= self.device_index:
            return None
        joystick = pg.joystick.Joystick(matches[self.device_index])
        joystick.init()
        self._joystick, self._name = joystick, joystick.get_name()
        axes = joystick.get_numaxes() + 2 * joystick.get_numhats()
        self._sizes = (axes, joystick.get_numbuttons())
        return PadEvent("connected", self._name,
                        f"gamepad '{self._name}' connected: {axes} axes, {joystick.get_numbuttons()} buttons")
