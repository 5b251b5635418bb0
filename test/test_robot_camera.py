"""Camera capture through real OpenCV: a video file, an image sequence, device loss and recovery, the node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mile_ros.robot.camera import Camera, CameraConfig, CameraError, parse_crop, source_kind

W, H = 64, 48


def frame_bgr(i: int) -> np.ndarray:
    """Frame i: left half pure blue (BGR), right half grey level 10*i, so order and colours are checkable."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = (255, 0, 0)
    img[:, W // 2 :] = (10 * i) % 250
    return img


def write_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(frame_bgr(i))
    writer.release()
    return path


def drain(camera: Camera, limit: int = 100):
    frames, events = [], []
    for _ in range(limit):
        rgb, ev = camera.read()
        events += ev
        if rgb is None and (camera.ended or not camera.connected):
            break
        if rgb is not None:
            frames.append(rgb)
    return frames, events


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("source", "kind"), [("0", "device"), ("/dev/video2", "device"),
                                              ("rtsp://cam.local/stream", "stream"),
                                              ("frames/img_%04d.png", "sequence"), ("clip.mp4", "file")])
def test_source_kind(source, kind):
    assert source_kind(source) == kind


def test_video_file_rgb_order_crop_resize(tmp_path):
    path = write_video(tmp_path / "clip.avi", 12)
    frames, events = drain(Camera(CameraConfig(source=str(path))))
    assert [e.kind for e in events] == ["opened", "ended"]
    assert len(frames) == 12 and frames[0].shape == (H, W, 3) and frames[0].dtype == np.uint8
    np.testing.assert_allclose(frames[0][H // 2, W // 4], [0, 0, 255], atol=12)  # blue, now in RGB order
    greys = [float(f[:, W // 2 + 4 :].mean()) for f in frames]
    np.testing.assert_allclose(greys, [10 * i for i in range(12)], atol=4)

    config = CameraConfig(source=str(path), crop=(W // 2, 8, 16, 16), output_width=32, output_height=24)
    frames, _ = drain(Camera(config))
    assert frames[5].shape == (24, 32, 3)
    np.testing.assert_allclose(frames[5].mean(), 50, atol=4)


def test_video_file_loops(tmp_path):
    path = write_video(tmp_path / "clip.avi", 5)
    camera = Camera(CameraConfig(source=str(path), loop=True))
    got, events = [], []
    for _ in range(13):
        rgb, ev = camera.read()
        got.append(rgb)
        events += ev
    assert [e.kind for e in events] == ["opened"]  # looping is not reported as a reconnection
    assert sum(f is not None for f in got) >= 11 and not camera.ended
    assert camera.frames >= 11


def test_image_sequence_exact(tmp_path):
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"img_{i:04d}.png"), frame_bgr(i))
    config = CameraConfig(source=str(tmp_path / "img_%04d.png"), crop=(W // 2 - 2, 0, 4, 2))
    frames, events = drain(Camera(config))
    assert [e.kind for e in events] == ["opened", "ended"] and len(frames) == 6
    expected = np.zeros((2, 4, 3), np.uint8)
    expected[:, :2] = (0, 0, 255)
    expected[:, 2:] = 30
    np.testing.assert_array_equal(frames[3], expected)  # lossless: exact, RGB order, cropped


def test_live_source_lost_and_recovered(tmp_path):
    """A live source that stops delivering is reopened until it is back (here: a stream-kind file source
    that runs dry, disappears, then reappears)."""
    path = write_video(tmp_path / "cam.avi", 4)
    clock = Clock()
    camera = Camera(CameraConfig(source=str(path), kind="stream", reconnect_s=1.0), clock=clock)
    frames, events = drain(camera)
    assert len(frames) == 4 and [e.kind for e in events] == ["opened", "lost"]
    assert "reconnecting every 1 s" in events[-1].message and not camera.connected
    hidden = path.rename(tmp_path / "away.avi")
    for _ in range(3):  # before the retry period: no attempt; after it: a failed attempt, reported once
        clock.now += 0.6
        rgb, ev = camera.read()
        assert rgb is None and ev == []
    hidden.rename(path)
    clock.now += 1.0
    rgb, ev = camera.read()
    assert [e.kind for e in ev] == ["reconnected"] and rgb is not None
    assert camera.connected and camera.frames == 5


def test_missing_device_reports_once_with_hint():
    clock = Clock()
    camera = Camera(CameraConfig(source="/dev/video63", reconnect_s=0.5), clock=clock)
    rgb, events = camera.read()
    assert rgb is None and [e.kind for e in events] == ["open_failed"]
    assert "/dev/video63" in events[0].message and "group 'video'" in events[0].message
    clock.now += 1.0
    assert camera.read() == (None, [])


def test_bad_configs(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        Camera(CameraConfig(source=str(tmp_path / "nope.mp4")))
    with pytest.raises(CameraError, match="folder"):
        Camera(CameraConfig(source=str(tmp_path / "nodir" / "img_%03d.png")))
    with pytest.raises(CameraError, match="crop"):
        CameraConfig(crop=(0, 0, 0, 10))
    with pytest.raises(CameraError, match="output_width"):
        CameraConfig(output_width=10)
    with pytest.raises(CameraError, match="x,y,width,height"):
        parse_crop("1,2,3")
    assert parse_crop(" 1, 2,3,4") == (1, 2, 3, 4) and parse_crop("") is None
    path = write_video(tmp_path / "clip.avi", 2)
    camera = Camera(CameraConfig(source=str(path), crop=(60, 0, 10, 10)))
    with pytest.raises(CameraError, match="does not fit"):
        camera.read()


# -- the node, in its own process, over DDS -----------------------------------------------------------

@pytest.mark.slow
def test_webcam_node_publishes_video_file(tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from mile_ros.nodes.common import qos

    path = write_video(tmp_path / "clip.avi", 20)
    domain_id = os.getpid() % 100 + 20
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mile_ros.nodes.webcam_node", "--ros-args", "-p", f"source:={path}",
         "-p", "rate_hz:=20.0", "-p", "loop:=true", "-p", "crop:=16,8,32,32", "-p", "output_width:=16",
         "-p", "output_height:=16"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("camera_listener", context=context)
    images, statuses = [], []
    node.create_subscription(Image, "/camera/image_raw", lambda m: images.append((time.monotonic(), m)),
                             qos("sensor"))
    node.create_subscription(String, "/camera/status", lambda m: statuses.append(json.loads(m.data)),
                             qos("latched"))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 30
        while len(images) < 25 and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        output = proc.stdout.read() if proc.poll() is not None else "(still running)"
        assert len(images) >= 25, f"got {len(images)} images; node output:\n{output}"
        msg = images[-1][1]
        assert (msg.width, msg.height, msg.encoding, msg.step) == (16, 16, "rgb8", 48)
        rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(16, 16, 3)
        assert rgb[8, 2, 2] > 200 and rgb[8, 2, 0] < 40  # the blue half survives crop/resize, in RGB order
        gaps = np.diff([t for t, _ in images[5:]])
        assert 0.02 < float(np.median(gaps)) < 0.1  # paced near 20 Hz, looping past the 20-frame file
        assert [s["state"] for s in statuses] == ["opened"]  # latched: the newest status, and no other
    finally:
        node.destroy_node()
        context.try_shutdown()
        proc.terminate()
        proc.communicate(timeout=20)  # drains the pipe, or a chatty node blocks on exit



@pytest.mark.slow
def test_webcam_node_reports_loss_and_recovery(tmp_path):
    """A live source (here a stream-kind file that runs dry, vanishes and comes back) over DDS."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from mile_ros.nodes.common import qos

    path = write_video(tmp_path / "cam.avi", 40)
    away = tmp_path / "away.avi"
    domain_id = os.getpid() % 100 + 20
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("camera_loss_listener", context=context)
    images, states = [], []
    node.create_subscription(Image, "/camera/image_raw", images.append, qos("sensor"))
    node.create_subscription(String, "/camera/status", lambda m: states.append(json.loads(m.data)["state"]),
                             qos("latched"))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mile_ros.nodes.webcam_node", "--ros-args", "-p", f"source:={path}",
         "-p", "kind:=stream", "-p", "rate_hz:=20.0", "-p", "reconnect_s:=0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def spin_until(predicate, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if predicate():
                return
            executor.spin_once(timeout_sec=0.05)
        raise AssertionError(f"timed out waiting for {what}; states {states}")

    try:
        spin_until(lambda: bool(images), "the first frame")
        path.rename(away)  # the open capture keeps reading; once it runs dry, reopening fails
        spin_until(lambda: "lost" in states, "the loss report")
        time.sleep(0.5)  # a few failed reopen attempts, which are not reported again
        n = len(images)
        away.rename(path)
        spin_until(lambda: states[-1] == "reconnected" and len(images) > n, "frames after recovery")
        # (the status topic keeps only the latest value, so a quick opened -> lost may arrive as lost alone)
    finally:
        node.destroy_node()
        context.try_shutdown()
        proc.terminate()
        proc.communicate(timeout=20)  # drains the pipe, or a chatty node blocks on exit
