"""What the launch files (``launch/*.launch.py``) share; only they import this module (it needs
``launch`` and ``launch_ros``, which come with ROS 2 or the vendored stack, not with mile_ros).

- **Launch arguments override the YAML only when given.** Each per-run argument defaults to ``""``,
  which sets nothing: the node's value comes from the parameter file (the one home of node
  defaults). A given value is converted to the parameter's type here, and a bad one stops the
  launch before any node starts, naming the argument.
- **A node's exit stops the launch.** The session manager exiting 0 is the end of the session: the
  launch logs that and shuts down (exit 0). Any other exit before the launch is stopping is a
  failure: the launch shuts down and ``ros2 launch`` exits 1 with the node's name and exit code.
- **A namespace for the whole graph.** Every launch file takes ``namespace`` (default: none): every
  node, and so every topic and service (names are relative, ``mile_ros.graph.topics``), lives under
  it, so two arms share one ROS domain (``namespace:=arm1``, ``namespace:=arm2``). A parameter file's
  sections are keyed by bare node names, which rcl matches only at the root namespace; the launch
  hands each node its section (and the file's ``/**`` one) as values instead, the same in any namespace.
- **Time to stop.** Every node gets ``sigterm_timeout`` seconds (a launch argument, default
  :data:`SIGTERM_TIMEOUT_S`) between SIGINT and SIGTERM: on a loaded 2-core machine a node that
  saves and closes its files needs more than launch's 5 s.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from launch.actions import DeclareLaunchArgument, LogInfo, Shutdown
from launch.events.process import ProcessExited
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "mile_ros"
SIGTERM_TIMEOUT_S = "30"
# Exit codes of a node stopped by the launch itself (its SIGINT, or SIGTERM after sigterm_timeout).
STOPPED = {0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}


class LaunchArgumentError(ValueError):
    """A launch argument whose value does not fit the parameter it sets."""


class NodeExitedError(RuntimeError):
    """A node that exited while the session was running; ``ros2 launch`` reports it and exits 1."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r} (true or false)")


TYPES: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": _bool}


def sigterm_timeout_argument() -> DeclareLaunchArgument:
    return DeclareLaunchArgument(
        "sigterm_timeout",
        default_value=SIGTERM_TIMEOUT_S,
        description="seconds a node has to stop after SIGINT before it gets SIGTERM",
    )


def namespace_argument() -> DeclareLaunchArgument:
    return DeclareLaunchArgument(
        "namespace",
        default_value="",
        description="ROS namespace of every node and topic (e.g. arm1; empty: the root)",
    )


def node_section(path: str, node: str) -> dict[str, Any]:
    """A node's parameters in a parameter file: its ``/**`` section, then its own (``node``,
    ``/node`` or ``/**/node``); the file is read by :func:`parameter_file`'s caller at launch time."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise LaunchArgumentError(f"parameter file {path}: not a mapping of node names to sections")
    out: dict[str, Any] = {}
    for key in ("/**", node, f"/{node}", f"/**/{node}"):
        section = data.get(key) or {}
        out.update(section.get("ros__parameters") or {})
    return out


def declare(arguments: Mapping[str, tuple[Any, ...]]) -> list[DeclareLaunchArgument]:
    """``DeclareLaunchArgument`` for each ``name: (default, description, ...)``."""
    return [DeclareLaunchArgument(name, default_value=spec[0], description=spec[1]) for name, spec in arguments.items()]


def given(context: LaunchContext, name: str) -> str:
    """The launch argument's value, stripped; ``""`` when it was not given."""
    return LaunchConfiguration(name).perform(context).strip()


def flag(context: LaunchContext, name: str) -> bool:
    """A true/false launch argument."""
    text = given(context, name)
    try:
        return _bool(text)
    except ValueError as exc:
        raise LaunchArgumentError(f"launch argument {name}:={text!r}: {exc}") from None


def require_package(package: str, why: str) -> None:
    """Stop the launch before any node starts when ``package`` is not in the ament index."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        raise LaunchArgumentError(
            f"{why}, but the package {package!r} is not installed (not on AMENT_PREFIX_PATH); nothing was started"
        ) from None


def parameter_file(context: LaunchContext, name: str) -> str:
    """The parameter file the launch argument ``name`` names, checked to exist."""
    text = given(context, name)
    path = Path(text).expanduser()
    if not path.is_file():
        raise LaunchArgumentError(f"launch argument {name}:={text!r}: no such parameter file")
    return str(path.absolute())


def session_values(context: LaunchContext, table: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
    """The session's paths for the nodes, from ``run_dir`` and ``initial_checkpoint``.

    ``table`` maps a node to the parameters it takes of: ``run_dir``, ``output_dir`` and ``bags_dir``
    (the run's ``bags/``), ``checkpoint_dir`` (``checkpoints/``), ``checkpoint`` and
    ``initial_checkpoint`` (the initial policy). The initial policy must exist; without one given, a
    run directory that holds a session resumes with the session's own.
    """
    from mile_ros.graph.session import STATE_FILE

    run_dir = Path(given(context, "run_dir") or ".").expanduser().absolute()
    text = given(context, "initial_checkpoint")
    if text:
        initial = Path(text).expanduser().absolute()
    else:
        try:
            initial = Path(json.loads((run_dir / STATE_FILE).read_text())["initial_checkpoint"])
        except (OSError, ValueError, KeyError, TypeError):
            raise LaunchArgumentError(
                f"initial_checkpoint:= is needed: {run_dir} holds no session to resume "
                "(make an initial policy with: mile-ros init-policy --task TASK --out FILE)"
            ) from None
    if not initial.is_file():
        raise LaunchArgumentError(f"initial checkpoint {initial} does not exist")
    values = {
        "run_dir": run_dir,
        "output_dir": run_dir / "bags",
        "bags_dir": run_dir / "bags",
        "checkpoint_dir": run_dir / "checkpoints",
        "checkpoint": initial,
        "initial_checkpoint": initial,
    }
    return {node: {name: str(values[name]) for name in names} for node, names in table.items()}


def overrides(context: LaunchContext, table: Mapping[str, Iterable[tuple[str, str, str]]]) -> dict[str, dict[str, Any]]:
    """Per-node parameters from the launch arguments that were given.

    ``table`` maps a launch argument to the ``(node, parameter, type)`` it sets, type one of
    :data:`TYPES`. An argument left empty sets nothing.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, targets in table.items():
        text = given(context, name)
        if not text:
            continue
        for node, parameter, kind in targets:
            try:
                value = TYPES[kind](text)
            except ValueError as exc:
                raise LaunchArgumentError(f"launch argument {name}:={text!r} is not a {kind}: {exc}") from None
            out.setdefault(node, {})[parameter] = value
    return out


def on_exit(name: str, ends_session: bool) -> Callable[[ProcessExited, LaunchContext], list | None]:
    """What the launch does when node ``name`` exits (see the module's docstring)."""

    def handle(event: ProcessExited, context: LaunchContext) -> list | None:
        code = event.returncode
        if context.is_shutdown:
            if code in STOPPED:
                return None
            return [LogInfo(msg=f"{name} exited with code {code} while the launch was stopping")]
        if ends_session and code == 0:
            return [LogInfo(msg=f"{name} finished: stopping the launch"), Shutdown(reason=f"{name} finished")]
        # An exception here is how a launch fails: LaunchService logs it, shuts down, and returns 1.
        raise NodeExitedError(f"node {name} exited with code {code} (its output is above): stopping the launch")

    return handle


def mile_node(name: str, parameters: list, *, ends_session: bool = False, **kwargs: Any) -> Node:
    """A mile_ros node in the launch's ``namespace``: its output on the screen, its exit handled by
    :func:`on_exit`."""
    return Node(
        package=PACKAGE,
        executable=name,
        name=name,
        namespace=LaunchConfiguration("namespace", default=""),
        parameters=parameters,
        output="screen",
        emulate_tty=True,
        sigterm_timeout=LaunchConfiguration("sigterm_timeout", default=SIGTERM_TIMEOUT_S),
        on_exit=on_exit(name, ends_session),
        **kwargs,
    )
