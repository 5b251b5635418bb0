"""Camera capture through OpenCV: a device index or path, a stream URL, a video file or an image sequence.

``Camera.read()`` returns the next RGB frame (cropped and resized as configured) or None, and reports
connection changes as :class:`CameraEvent`. Live sources (devices, streams) that stop delivering are
reopened every ``reconnect_s`` until they come back; files end (or loop).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Camera", "CameraConfig", "CameraError", "CameraEvent", "parse_crop", "source_kind"]

_STREAM = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class CameraError(ValueError):
    """A camera configuration that cannot work (bad crop, unknown file, ...)."""


def parse_crop(text: str) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` -> a crop tuple; empty -> None."""
    if not text.strip():
        return None
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError as exc:
        raise CameraError(f"crop must be 'x,y,width,height' in pixels, got {text!r}") from exc
    if len(values) != 4:
        raise CameraError(f"crop must have 4 values x,y,width,height, got {text!r}")
    return values  # type: ignore[return-value]


def source_kind(source: str) -> str:
    """``device`` (index or /dev path), ``stream`` (URL), ``sequence`` (printf pattern) or ``file``."""
    text = str(source).strip()
    if text.isdigit() or text.startswith("/dev/"):
        return "device"
    if _STREAM.match(text):
        return "stream"
    if re.search(r"%0?\d*d", text):
        return "sequence"
    return "file"


@dataclass(frozen=True)
class CameraConfig:
    source: str = "0"
    kind: str = "auto"  # auto | device | stream | file | sequence (auto: from the source's form)
    width: int = 0  # requested capture size (devices); 0: the device's default
    height: int = 0
    fps: float = 0.0  # requested capture rate (devices); 0: the device's default
    crop: tuple[int, int, int, int] | None = None  # x, y, width, height in captured pixels
    output_width: int = 0  # resize after cropping; 0: keep
    output_height: int = 0
    loop: bool = False  # files and sequences: start again at the end
    reconnect_s: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "device", "stream", "file", "sequence"):
            raise CameraError(f"unknown camera kind {self.kind!r}")
        crop = self.crop
        bad_crop = crop is not None and (len(crop) != 4 or min(crop[2:]) <= 0 or min(crop[:2]) < 0)
        if bad_crop:
            raise CameraError(f"crop must be x, y, width, height with positive size, got {self.crop}")
        if (self.output_width > 0) != (self.output_height > 0):
            raise CameraError("give both output_width and output_height, or neither")
        if self.reconnect_s <= 0:
            raise CameraError(f"reconnect_s must be positive, got {self.reconnect_s}")

    @property
    def resolved_kind(self) -> str:
        return source_kind(self.source) if self.kind == "auto" else self.kind

    @property
    def live(self) -> bool:
        return self.resolved_kind in ("device", "stream")


@dataclass(frozen=True)
class CameraEvent:
    """``opened``, ``open_failed``, ``lost``, ``reconnected`` or ``ended``, with a message for people."""

    kind: str
    message: str


def _default_opener(config: CameraConfig) -> Any:
    import cv2

    kind = config.resolved_kind
    if kind == "device":
        target: Any = int(config.source) if config.source.strip().isdigit() else config.source
        capture = cv2.VideoCapture(target)
        if config.width > 0 and config.height > 0:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
        if config.fps > 0:
            capture.set(cv2.CAP_PROP_FPS, config.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
        return capture
    if kind == "sequence":
        return cv2.VideoCapture(config.source, cv2.CAP_IMAGES)
    return cv2.VideoCapture(config.source)


class Camera:
    """One OpenCV capture with cropping, resizing and reconnection."""

    def __init__(self, config: CameraConfig, opener: Callable[[CameraConfig], Any] = _default_opener,
                 clock: Callable[[], float] = time.monotonic) -> None:
        kind = config.resolved_kind
        if kind == "file" and not Path(config.source).is_file():
            raise CameraError(f"video file {config.source} does not exist")
        if kind == "sequence" and not Path(config.source).parent.is_dir():
            raise CameraError(f"image sequence folder {Path(config.source).parent} does not exist")
        self.config, self._opener, self._clock = config, opener, clock
        self._capture: Any = None
        self._ever_opened = False
        self._lost = False
        self._next_attempt = 0.0
        self._ended = False
        self._looping = False
        self.frames = 0
        self.failures = 0

    @property
    def connected(self) -> bool:
        return self._capture is not None

    @property
    def ended(self) -> bool:
        return self._ended

    def read(self) -> tuple[np.ndarray | None, list[CameraEvent]]:
        """The next RGB frame (or None) and any connection events."""
        events: list[CameraEvent] = []
        if self._ended:
            return None, events
        if self._capture is None and not self._open(events):
            return None, events
        ok, frame = self._capture.read()
        if not ok or frame is None:
            self._on_failure(events)
            return None, events
        try:
            rgb = self._convert(frame)
        except CameraError:
            self.close()
            raise
        self.frames += 1
        return rgb, events

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    # -- internals --------------------------------------------------------------------------------
    def _open(self, events: list[CameraEvent]) -> bool:
        now = self._clock()
        if now < self._next_attempt:
            return False
        capture = self._opener(self.config)
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            self._next_attempt = now + self.config.reconnect_s
            if not self._lost and not self._ever_opened:
                events.append(CameraEvent("open_failed", f"cannot open camera source {self.config.source!r} "
                                          f"({self.config.resolved_kind}); retrying every "
                                          f"{self.config.reconnect_s:g} s - {self._hint()}"))
                self._lost = True
            return False
        self._capture = capture
        if self._looping:
            self._looping = False
        elif self._ever_opened:
            events.append(CameraEvent("reconnected", f"camera {self.config.source!r} is back"))
        else:
            events.append(CameraEvent("opened", f"camera {self.config.source!r} opened"))
        self._ever_opened, self._lost = True, False
        return True

    def _on_failure(self, events: list[CameraEvent]) -> None:
        self.failures += 1
        if not self.config.live:
            if self.config.loop and self.frames > 0:
                self.close()
                self._next_attempt = 0.0
                self._looping = True  # reopening a file at its start is no reconnection
                return
            self.close()
            self._ended = True
            events.append(CameraEvent("ended", f"{self.config.source!r} has no more frames"))
            return
        self.close()
        self._lost = True
        self._next_attempt = self._clock() + self.config.reconnect_s
        events.append(CameraEvent("lost", f"camera {self.config.source!r} stopped delivering frames; "
                                  f"reconnecting every {self.config.reconnect_s:g} s"))

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB if frame.ndim == 2 else cv2.COLOR_BGR2RGB)
        if self.config.crop is not None:
            x, y, w, h = self.config.crop
            if x + w > rgb.shape[1] or y + h > rgb.shape[0]:
                raise CameraError(f"crop {self.config.crop} (x, y, w, h) does not fit the "
                                  f"{rgb.shape[1]}x{rgb.shape[0]} frame")
            rgb = rgb[y:y + h, x:x + w]
        if self.config.output_width > 0:
            size = (self.config.output_width, self.config.output_height)
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb)

    def _hint(self) -> str:
        kind = self.config.resolved_kind
        if kind == "device":
            return ("is it plugged in, and may this user read /dev/video* (group 'video')? "
                    "`v4l2-ctl --list-devices` lists them")
        if kind == "stream":
            return "is the URL reachable from this machine?"
        return "is the path right and readable by OpenCV?"
