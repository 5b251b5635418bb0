"""Task presets (``sim/<task>.yaml``): simulated human, expert noise, initial-policy recipe, and the
per-task training settings of each method (section ``training``, read by
``mile_ros.baselines.method_config``; the methods' own defaults are their config dataclasses).

Presets are found through :mod:`mile_ros.paths` (the source tree's ``sim/`` folder when running
from a checkout, else the installed ``share/mile_ros/sim``); a folder named by ``MILE_ROS_SIM_PRESETS``
comes first. A Metaworld task without its own file uses ``default.yaml``.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mile_ros.paths import data_roots

__all__ = ["PresetError", "load_preset", "preset_dirs"]

DEFAULT_PRESET = "default"


class PresetError(RuntimeError):
    """A preset that is missing or cannot be read."""


def preset_dirs() -> list[Path]:
    """Folders searched for presets, first match wins: ``$MILE_ROS_SIM_PRESETS``, then the package's."""
    dirs = [Path(env)] if (env := os.environ.get("MILE_ROS_SIM_PRESETS")) else []
    return dirs + [root / "sim" for root in data_roots()]


def _find(name: str) -> Path | None:
    for d in preset_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=64)
def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PresetError(f"cannot read preset {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PresetError(f"preset {path} is not a mapping")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_preset(task: str) -> dict[str, Any]:
    """The preset for ``task``: its own file over ``default.yaml`` (a fresh dict, safe to modify)."""
    default_path = _find(DEFAULT_PRESET)
    if default_path is None:
        raise PresetError(f"no {DEFAULT_PRESET}.yaml in {', '.join(map(str, preset_dirs()))}")
    own = _find(task)
    preset = _merge(_read(default_path), _read(own) if own else {})
    preset["task"] = task
    preset["preset_file"] = str(own or default_path)
    return preset
