"""The ROS 2 launch stack the launch tests run against, and the environment they run ``ros2 launch`` in.

The stack is the vendored one that ``scripts/setup.sh --test`` installs from
``../shared/vendor/ros2-launch`` (``$ROS2_LAUNCH_VENDOR``), or a ROS 2 distribution's (source its
``setup.bash``). Where neither is present the launch tests are skipped with that reason; where the
vendored copy is there but not installed they fail, since the README's test command installs it.

The launch files and nodes under test are this checkout's: the environment puts the ament prefix
that registers this checkout first (``python -m mile_ros.paths --link-into .venv``, which
``scripts/setup.sh`` runs), and leaves out any other mile_ros on ``AMENT_PREFIX_PATH`` or
``PYTHONPATH`` (a sourced colcon workspace, say).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mile_ros"
MARKER = Path("share", "ament_index", "resource_index", "packages", PACKAGE)
MODULES = ("launch", "launch_ros", "ros2launch", "launch_pytest")


def vendor_dir() -> Path | None:
    """The vendored launch stack next to the checkout, as scripts/setup.sh finds it (None: absent)."""
    text = os.environ.get("ROS2_LAUNCH_VENDOR", str(ROOT.parent / "shared" / "vendor" / "ros2-launch"))
    if not text:
        return None
    path = Path(text) if Path(text).is_absolute() else ROOT / text
    return path if (path / "install.sh").is_file() else None


def _installed(module: str) -> bool:
    """A regular package of that name (the checkout's ``launch/`` folder is only a namespace package)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin not in (None, "namespace")


def ros2_command() -> str:
    """The ``ros2`` command of the stack; skips (no stack) or fails (vendored but not installed)."""
    missing = [m for m in MODULES if not _installed(m)]
    scripts = Path(sysconfig.get_path("scripts")) / "ros2"
    ros2 = str(scripts) if scripts.is_file() else shutil.which("ros2")
    if not missing and ros2:
        return ros2
    what = f"modules {', '.join(missing)}" if missing else "the ros2 command"
    if vendor := vendor_dir():
        pytest.fail(
            f"the vendored ROS 2 launch stack ({vendor}) is not installed here ({what} missing): "
            "run scripts/setup.sh --test"
        )
    pytest.skip(
        f"no ROS 2 launch stack ({what} missing): source a ROS 2 distribution, or put the vendored "
        "stack at ../shared/vendor/ros2-launch and run scripts/setup.sh --test"
    )


def _own_prefix() -> Path:
    """The ament prefix registering this checkout: its share/mile_ros/launch files are this checkout's."""
    candidates = [Path(sysconfig.get_path("data"))]
    candidates += [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in candidates:
        if (prefix / MARKER).is_file() and _is_this_checkout(prefix / "share" / PACKAGE):
            return prefix
    pytest.fail(
        f"no ament prefix registers this checkout ({ROOT}): ros2 launch would not find mile_ros, or would "
        f"run another copy. Run scripts/setup.sh (or python -m mile_ros.paths --link-into {sysconfig.get_path('data')})"
    )


def _is_this_checkout(share: Path) -> bool:
    for source in (ROOT / "launch").glob("*.launch.py"):
        installed = share / "launch" / source.name
        if not installed.is_file() or installed.read_bytes() != source.read_bytes():
            return False
    return True


def _other_copy_on_path(entry: str, own: Path) -> bool:
    """``entry`` of PYTHONPATH holds a mile_ros that is neither this checkout nor the own prefix's."""
    module = Path(entry) / PACKAGE / "__init__.py"
    if not module.is_file() or Path(entry).resolve().is_relative_to(own.resolve()):
        return False
    return module.resolve() != (ROOT / PACKAGE / "__init__.py").resolve()


def launch_env(base: dict[str, str] | None = None, *, only_own_prefix: bool = False) -> dict[str, str]:
    """``base`` (default ``os.environ``) for ``ros2 launch``: this checkout's prefix first on
    AMENT_PREFIX_PATH, no other mile_ros there or on PYTHONPATH. ``only_own_prefix`` drops every
    other prefix too (so packages of an installed distribution, e.g. joy, are not found)."""
    env = dict(os.environ if base is None else base)
    own = _own_prefix()
    rest = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p and Path(p) != own]
    rest = [p for p in rest if not (Path(p) / MARKER).is_file()]
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(own)] + ([] if only_own_prefix else rest))
    python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and not _other_copy_on_path(p, own)]
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    else:
        env.pop("PYTHONPATH", None)
    return env
