"""``mile-ros doctor``: checks a machine before a real-robot session and says what to fix.

Checks: rclpy and DDS (a message through the middleware), the robot library, the camera (frames and
the frame rate actually achieved), the gamepad (name, axes, buttons against the mapping), the R3M
checkpoint (loads, output dimension) and free disk for bags. Exit code 1 when any check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | FAIL
    detail: str
    fix: str = ""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("doctor", help="check this machine before a real-robot session")
    parser.add_argument("--camera", default="0", help="camera source as webcam_node takes it (default 0)")
    parser.add_argument("--camera-seconds", type=float, default=3.0, help="how long to read frames")
    parser.add_argument("--min-fps", type=float, default=10.0, help="slowest acceptable camera rate")
    parser.add_argument("--joy-mapping", default="ps3", help="gamepad mapping the session uses (ps3, sdl, path)")
    parser.add_argument("--checkpoint", default="", help="R3M model.pt to check")
    parser.add_argument("--bag-dir", default="runs", help="where bags will be written")
    parser.add_argument("--min-free-gb", type=float, default=20.0, help="least free disk for bags")
    parser.add_argument("--skip", default="", help="comma list of checks to skip: dds,robot,camera,gamepad,r3m,disk")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("dds", check_dds),
        ("robot", check_robot_library),
        ("camera", lambda: check_camera(args.camera, args.camera_seconds, args.min_fps)),
        ("gamepad", lambda: check_gamepad(args.joy_mapping)),
        ("r3m", lambda: check_r3m(args.checkpoint)),
        ("disk", lambda: check_disk(args.bag_dir, args.min_free_gb)),
    ]
    results = []
    for key, check in checks:
        if key in skip:
            continue
        try:
            result = check()
        except Exception as exc:  # a check that crashes is a failed check, with its reason
            result = Check(key, FAIL, f"{type(exc).__name__}: {exc}")
        results.append(result)
        print(f"[{result.status:>4}] {result.name}: {result.detail}", flush=True)
        if result.fix:
            print(f"       fix: {result.fix}", flush=True)
    failed = [r for r in results if r.status == FAIL]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed"
          + ("" if not failed else f"; fix: {', '.join(r.name for r in failed)}"))
    return 1 if failed else 0


def check_dds(timeout: float = 20.0) -> Check:
    """A message from a publisher to a subscription through the middleware, on this ROS_DOMAIN_ID."""
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String
    except ImportError as exc:
        return Check("rclpy/DDS", FAIL, f"rclpy is not importable ({exc})",
                     "source your ROS 2 setup.bash, or pip install 'mile_ros[ros]'")
    from rclpy.qos import QoSProfile

    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(f"mile_doctor_{os.getpid()}", context=context)
        got: list[str] = []
        topic = f"/mile_doctor_{os.getpid()}"
        pub = node.create_publisher(String, topic, QoSProfile(depth=10))
        node.create_subscription(String, topic, lambda m: got.append(m.data), QoSProfile(depth=10))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        start = time.monotonic()
        while not got and time.monotonic() - start < timeout:
            pub.publish(String(data="ping"))
            executor.spin_once(timeout_sec=0.1)
        elapsed = time.monotonic() - start
        rmw = rclpy.get_rmw_implementation_identifier()
        graph = sorted({name for name, _ in node.get_topic_names_and_types() if name.endswith("joint_states")})
        node.destroy_node()
    finally:
        context.try_shutdown()
    if not got:
        return Check("rclpy/DDS", FAIL, f"no message came back through {rmw} within {timeout:.0f} s",
                     "check the firewall/multicast settings and ROS_AUTOMATIC_DISCOVERY_RANGE")
    extra = f"; joint-state topics on the graph: {', '.join(graph)}" if graph else ""
    return Check("rclpy/DDS", OK, f"{rmw}, ROS_DOMAIN_ID={domain}, round trip {elapsed:.3f} s"
                 + extra)


def check_robot_library() -> Check:
    try:
        import interbotix_xs_modules.xs_robot.arm  # noqa: F401
    except ImportError:
        from mile_ros.robot.backends.interbotix import INSTALL_HINT

        return Check("robot library", FAIL, "interbotix_xs_modules is not importable", INSTALL_HINT)
    return Check("robot library", OK, "interbotix_xs_modules imports (start xsarm_control before the session)")


def check_camera(source: str, seconds: float, min_fps: float) -> Check:
    from mile_ros.robot.camera import Camera, CameraConfig, CameraError

    try:
        camera = Camera(CameraConfig(source=source))
    except CameraError as exc:
        return Check("camera", FAIL, str(exc), "pass --camera with an existing device, URL or file")
    frames, shape, messages = 0, None, []
    start = time.monotonic()
    first = None
    try:
        while time.monotonic() - start < seconds and not camera.ended:
            rgb, events = camera.read()
            messages += [e.message for e in events if e.kind in ("open_failed", "lost")]
            if rgb is None:
                if not camera.connected:
                    break
                continue
            frames += 1
            shape = rgb.shape
            first = first or time.monotonic()
    finally:
        camera.close()
    if frames == 0:
        return Check("camera", FAIL, f"no frames from {source!r}" + (f": {messages[0]}" if messages else ""),
                     "plug the webcam in, check `v4l2-ctl --list-devices`, or pass --camera")
    fps = (frames - 1) / max(time.monotonic() - first, 1e-9) if frames > 1 else 0.0
    detail = f"{source!r}: {frames} frames of {shape[1]}x{shape[0]}, {fps:.1f} frames/s achieved"
    if fps < min_fps:
        return Check("camera", WARN, detail + f" (below {min_fps:g})",
                     "lower the resolution (width/height), improve lighting (auto exposure slows webcams) "
                     "or use another USB port")
    return Check("camera", OK, detail)


def check_gamepad(mapping_name: str) -> Check:
    from mile_ros.graph.joy_mapping import load_joy_mapping
    from mile_ros.robot.gamepad import Gamepad

    mapping = load_joy_mapping(mapping_name)
    pad = Gamepad()
    state, events = pad.poll()
    if not state.connected:
        return Check("gamepad", FAIL, events[0].message if events else "no gamepad",
                     "connect the PS3 pad (USB cable, or pair it: sixpair / bluetoothctl) and press its PS button")
    needed_axes = max(a.axis for a in mapping.actions) + 1
    needed_buttons = max(mapping.buttons.values()) + 1
    names = ", ".join(f"{k}=button {v}" for k, v in mapping.buttons.items())
    detail = (f"'{state.name}': {len(state.axes)} axes, {len(state.buttons)} buttons; mapping "
              f"'{mapping.name}' ({names})")
    pad.close()
    if len(state.axes) < needed_axes or len(state.buttons) < needed_buttons:
        return Check("gamepad", FAIL, detail + f" needs {needed_axes} axes and {needed_buttons} buttons",
                     "choose the mapping for this pad (--joy-mapping sdl) or write one in config/")
    # hats add axes (two each, as the joy node does), so only fewer axes or other buttons hint at a layout
    if len(state.buttons) != mapping.buttons_count or len(state.axes) < mapping.axes_count:
        return Check("gamepad", WARN, detail + f" is written for {mapping.axes_count} axes and "
                     f"{mapping.buttons_count} buttons: probably another layout",
                     "check the mapping against `ros2 topic echo /teleop/joy` while pressing each button, "
                     "and pick or write the right one")
    return Check("gamepad", OK, detail)


def check_r3m(checkpoint: str) -> Check:
    if not checkpoint:
        return Check("R3M checkpoint", WARN, "none given (--checkpoint)",
                     "download R3M's resnet50 model.pt (facebookresearch/r3m) and pass its path")
    import numpy as np

    from mile_ros.robot.r3m import R3MCheckpointError, R3MEncoder

    try:
        start = time.monotonic()
        encoder = R3MEncoder(checkpoint)
        out = encoder.encode(np.zeros((224, 224, 3), np.uint8))
    except (R3MCheckpointError, ImportError) as exc:
        return Check("R3M checkpoint", FAIL, str(exc), "give the resnet50 model.pt of R3M")
    return Check("R3M checkpoint", OK, f"{checkpoint}: loads, output {out.shape[1]}-d, "
                 f"{time.monotonic() - start:.1f} s to load and encode one frame")


def check_disk(bag_dir: str, min_free_gb: float) -> Check:
    path = Path(bag_dir)
    probe = path if path.exists() else next((p for p in path.absolute().parents if p.exists()), Path("/"))
    free_gb = shutil.disk_usage(probe).free / 1e9
    detail = f"{free_gb:.1f} GB free at {probe.absolute()}"
    if free_gb < min_free_gb:
        return Check("disk", FAIL, detail + f" (want {min_free_gb:g} GB)", "free space or pass --bag-dir elsewhere")
    if path.exists() and not os.access(path, os.W_OK):
        return Check("disk", FAIL, detail + ", not writable", f"chmod/chown {path}")
    return Check("disk", OK, detail)
