"""The ``mile-ros`` command."""

from .main import main

__all__ = ["main"]
