"""Arm backends: ``sim`` (kinematic) and ``interbotix`` (the real WidowX, or interbotix's simulated SDK)."""

from __future__ import annotations

from typing import Any

from .base import ArmBackend, ArmState, RobotLibraryMissingError

__all__ = ["BACKENDS", "ArmBackend", "ArmState", "RobotLibraryMissingError", "make_backend"]

BACKENDS = ("sim", "interbotix")


def make_backend(name: str, **options: Any) -> ArmBackend:
    """Build the backend called ``name`` with its keyword options."""
    if name == "sim":
        from .sim import SimBackend

        return SimBackend(**options)
    if name == "interbotix":
        from .interbotix import InterbotixBackend

        return InterbotixBackend(**options)
    raise ValueError(f"unknown arm backend {name!r}; choose one of {', '.join(BACKENDS)}")
