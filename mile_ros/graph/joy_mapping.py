"""Gamepad -> action mapping shared by arbitration, the PS3 teleop node and the simulated human.

A mapping is a YAML file (``config/joy_ps3.yaml``, ``config/joy_sdl.yaml``)::

    name: ps3
    axes_count: 6           # size of the Joy message's axes array
    buttons_count: 17
    dead_zone: 0.1          # |axis| below this reads as 0; the rest is rescaled to keep [-1, 1]
    actions:                # one entry per action component, in ACTION_NAMES order
      dx: {axis: 1, scale: 1.0}
      ...
    buttons: {takeover: 4, success: 3, failure: 1, discard: 2, home: 10}

``action = clip(scale * dead_zone(axis), -1, 1)``; :meth:`JoyMapping.encode` is its exact inverse
for actions in [-1, 1], so a simulated human's Joy reads back as the action it meant.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mile_ros.paths import DataNotFoundError, find_data

from .topics import ACTION_NAMES

__all__ = ["BUTTONS", "JoyMapping", "JoyMappingError", "default_mapping_path", "load_joy_mapping"]

BUTTONS = ("takeover", "success", "failure", "discard", "home")


class JoyMappingError(ValueError):
    """A mapping file that is missing, malformed or inconsistent, or a Joy message that does not fit it."""


@dataclass(frozen=True)
class AxisMap:
    axis: int
    scale: float


@dataclass(frozen=True)
class JoyMapping:
    name: str
    axes_count: int
    buttons_count: int
    dead_zone: float
    actions: tuple[AxisMap, ...]  # ACTION_NAMES order
    buttons: dict[str, int]

    def __post_init__(self) -> None:
        if not 0.0 <= self.dead_zone < 1.0:
            raise JoyMappingError(f"{self.name}: dead_zone must lie in [0, 1), got {self.dead_zone}")
        if len(self.actions) != len(ACTION_NAMES):
            raise JoyMappingError(f"{self.name}: needs {len(ACTION_NAMES)} action axes {ACTION_NAMES}")
        axes = [a.axis for a in self.actions]
        if len(set(axes)) != len(axes):
            raise JoyMappingError(f"{self.name}: two actions share one axis: {axes}")
        for a in self.actions:
            if not 0 <= a.axis < self.axes_count:
                raise JoyMappingError(f"{self.name}: axis {a.axis} outside 0..{self.axes_count - 1}")
            if a.scale == 0 or not np.isfinite(a.scale):
                raise JoyMappingError(f"{self.name}: axis {a.axis} has scale {a.scale}")
        missing = [b for b in BUTTONS if b not in self.buttons]
        if missing:
            raise JoyMappingError(f"{self.name}: buttons missing: {missing}")
        for key, idx in self.buttons.items():
            if not 0 <= idx < self.buttons_count:
                raise JoyMappingError(f"{self.name}: button {key}={idx} outside 0..{self.buttons_count - 1}")

    # ---- Joy -> action ----------------------------------------------------------------------

    def action(self, axes: Sequence[float], buttons: Sequence[int] = ()) -> np.ndarray:
        """The 4-d action the sticks command (float64, in [-1, 1]); NaN axes are refused."""
        if len(axes) < max(a.axis for a in self.actions) + 1:
            raise JoyMappingError(f"Joy has {len(axes)} axes; mapping {self.name!r} needs {self.axes_count}")
        raw = np.array([float(axes[a.axis]) for a in self.actions])
        if not np.isfinite(raw).all():
            raise JoyMappingError(f"Joy axes contain NaN or infinite values: {raw}")
        mag = np.abs(raw)
        shaped = np.where(mag < self.dead_zone, 0.0, np.sign(raw) * (mag - self.dead_zone) / (1.0 - self.dead_zone))
        scales = np.array([a.scale for a in self.actions])
        return np.clip(scales * shaped, -1.0, 1.0)

    def pressed(self, buttons: Sequence[int], which: str) -> bool:
        idx = self.buttons[which]
        if len(buttons) <= idx:
            raise JoyMappingError(f"Joy has {len(buttons)} buttons; {which!r} is button {idx} in mapping {self.name!r}")
        return bool(buttons[idx])

    # ---- action -> Joy (simulated human) ----------------------------------------------------

    def encode(self, action: Sequence[float], pressed: Sequence[str] = ()) -> tuple[list[float], list[int]]:
        """Axes and buttons that :meth:`action` reads back as ``action`` with ``pressed`` buttons held."""
        act = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if act.shape[0] != len(self.actions) or not np.isfinite(act).all():
            raise JoyMappingError(f"cannot encode action {act}: need {len(self.actions)} finite values")
        axes = [0.0] * self.axes_count
        for value, a in zip(act, self.actions):
            shaped = value / a.scale
            if abs(shaped) > 1.0:
                raise JoyMappingError(f"action {value} needs axis {a.axis} beyond +-1 (scale {a.scale})")
            axes[a.axis] = (
                0.0 if shaped == 0 else float(np.sign(shaped) * (self.dead_zone + abs(shaped) * (1 - self.dead_zone)))
            )
        buttons = [0] * self.buttons_count
        for name in pressed:
            buttons[self.buttons[name]] = 1
        return axes, buttons

    # ---- files ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "mapping") -> JoyMapping:
        try:
            acts = d["actions"]
            missing = [n for n in ACTION_NAMES if n not in acts]
            if missing:
                raise JoyMappingError(f"{source}: actions missing: {missing}")
            return cls(
                name=str(d.get("name", source)),
                axes_count=int(d["axes_count"]),
                buttons_count=int(d["buttons_count"]),
                dead_zone=float(d.get("dead_zone", 0.0)),
                actions=tuple(AxisMap(int(acts[n]["axis"]), float(acts[n].get("scale", 1.0))) for n in ACTION_NAMES),
                buttons={str(k): int(v) for k, v in d["buttons"].items()},
            )
        except JoyMappingError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JoyMappingError(f"{source}: malformed joy mapping ({type(exc).__name__}: {exc})") from exc


def default_mapping_path(name: str) -> Path:
    """``config/joy_<name>.yaml`` of the package (source tree or install: :mod:`mile_ros.paths`)."""
    try:
        return find_data("config", f"joy_{name}.yaml")
    except (DataNotFoundError, ValueError) as exc:
        raise JoyMappingError(f"no joy mapping named {name!r}: {exc}") from None


def __getattr__(name: str) -> Path:
    # CONFIG_DIR: the folder of the mappings found first, resolved when asked (not at import time).
    if name == "CONFIG_DIR":
        return default_mapping_path("ps3").parent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_joy_mapping(name_or_path: str | os.PathLike) -> JoyMapping:
    """Load a mapping from a YAML path, or by name (``ps3``, ``sdl``) from config/."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = default_mapping_path(str(name_or_path))
    if not path.is_file():
        raise JoyMappingError(f"joy mapping file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise JoyMappingError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise JoyMappingError(f"{path}: expected a mapping at the top level")
    return JoyMapping.from_dict(data, str(path))
