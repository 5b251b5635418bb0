"""An SDL virtual joystick in this process, for tests and demos without a pad.

SDL (2.0.14+) can attach a virtual joystick that every SDL reader in the same process sees as a real
device; pygame bundles SDL2, so this drives pygame's real joystick path through ctypes. Virtual devices
are per process: the reader (e.g. the teleop node) must run in the process that attached it.
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

__all__ = ["VirtualJoystick", "VirtualJoystickError", "sdl_library"]

SDL_JOYSTICK_TYPE_GAMECONTROLLER = 1


class VirtualJoystickError(RuntimeError):
    """SDL refused to attach or drive the virtual joystick."""


def sdl_library() -> ctypes.CDLL:
    """pygame's bundled SDL2 (the same library pygame reads joysticks with)."""
    import pygame

    libs = Path(pygame.__file__).resolve().parent.parent / "pygame.libs"
    candidates = sorted(glob.glob(str(libs / "libSDL2-*.so*")))
    if not candidates:
        raise VirtualJoystickError(f"no bundled libSDL2 next to pygame in {libs}; a pygame wheel is needed")
    sdl = ctypes.CDLL(candidates[0])
    sdl.SDL_JoystickAttachVirtual.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    sdl.SDL_JoystickAttachVirtual.restype = ctypes.c_int
    sdl.SDL_JoystickDetachVirtual.argtypes = [ctypes.c_int]
    sdl.SDL_JoystickDetachVirtual.restype = ctypes.c_int
    sdl.SDL_JoystickOpen.argtypes = [ctypes.c_int]
    sdl.SDL_JoystickOpen.restype = ctypes.c_void_p
    sdl.SDL_JoystickClose.argtypes = [ctypes.c_void_p]
    sdl.SDL_JoystickSetVirtualAxis.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int16]
    sdl.SDL_JoystickSetVirtualAxis.restype = ctypes.c_int
    sdl.SDL_JoystickSetVirtualButton.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
    sdl.SDL_JoystickSetVirtualButton.restype = ctypes.c_int
    sdl.SDL_JoystickSetVirtualHat.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
    sdl.SDL_JoystickSetVirtualHat.restype = ctypes.c_int
    sdl.SDL_GetError.restype = ctypes.c_char_p
    return sdl


class VirtualJoystick:
    """A pad with ``axes`` axes, ``buttons`` buttons and ``hats`` hats; plug, move, press, unplug."""

    def __init__(self, axes: int = 6, buttons: int = 12, hats: int = 1) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        import pygame

        pygame.display.init()  # the event queue; the dummy driver opens no window
        pygame.joystick.init()  # SDL's joystick subsystem must be up before attaching
        self.sdl = sdl_library()
        self.axes, self.buttons, self.hats = axes, buttons, hats
        self._index: int | None = None
        self._handle: int | None = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def attach(self) -> None:
        """Plug the pad in (pygame sees a JOYDEVICEADDED event)."""
        if self.attached:
            return
        index = self.sdl.SDL_JoystickAttachVirtual(SDL_JOYSTICK_TYPE_GAMECONTROLLER, self.axes, self.buttons,
                                                   self.hats)
        if index < 0:
            raise VirtualJoystickError(f"SDL_JoystickAttachVirtual failed: {self._error()}")
        handle = self.sdl.SDL_JoystickOpen(index)
        if not handle:
            self.sdl.SDL_JoystickDetachVirtual(index)
            raise VirtualJoystickError(f"SDL_JoystickOpen({index}) failed: {self._error()}")
        self._index, self._handle = index, handle

    def detach(self) -> None:
        """Unplug the pad (pygame sees a JOYDEVICEREMOVED event)."""
        if not self.attached:
            return
        self.sdl.SDL_JoystickClose(self._handle)
        if self.sdl.SDL_JoystickDetachVirtual(self._index) < 0:
            raise VirtualJoystickError(f"SDL_JoystickDetachVirtual failed: {self._error()}")
        self._index = self._handle = None

    def set_axis(self, axis: int, raw: int) -> None:
        """Set an axis to a raw SDL value in [-32768, 32767]."""
        self._check(self.sdl.SDL_JoystickSetVirtualAxis(self._live(), axis, int(raw)), f"axis {axis}")

    def set_axis_value(self, axis: int, value: float) -> None:
        """Set an axis from a float in [-1, 1] (SDL's scale, before any ROS sign convention)."""
        self.set_axis(axis, max(-32768, min(32767, round(value * 32767))))

    def set_button(self, button: int, pressed: bool) -> None:
        rc = self.sdl.SDL_JoystickSetVirtualButton(self._live(), button, int(pressed))
        self._check(rc, f"button {button}")

    def set_hat(self, hat: int, value: int) -> None:
        """Set a hat to an SDL hat bit mask (1 up, 2 right, 4 down, 8 left)."""
        self._check(self.sdl.SDL_JoystickSetVirtualHat(self._live(), hat, value), f"hat {hat}")

    def close(self) -> None:
        self.detach()

    def __enter__(self) -> VirtualJoystick:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> int:
        if self._handle is None:
            raise VirtualJoystickError("the virtual joystick is not attached")
        return self._handle

    def _check(self, rc: int, what: str) -> None:
        if rc < 0:
            raise VirtualJoystickError(f"setting {what} failed: {self._error()}")

    def _error(self) -> str:
        return (self.sdl.SDL_GetError() or b"").decode(errors="replace")
