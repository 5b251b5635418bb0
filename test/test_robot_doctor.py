"""``mile-ros doctor``: each check against real parts (OpenCV on a video file, the SDL virtual pad, an R3M
checkpoint, DDS), and the command's exit code and advice."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mile_ros.cli.doctor import (
    FAIL,
    OK,
    WARN,
    check_camera,
    check_dds,
    check_disk,
    check_gamepad,
    check_r3m,
    check_robot_library,
)
from mile_ros.graph.joy_mapping import CONFIG_DIR as CONFIG


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("doctor") / "cam.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (80, 60))
    for i in range(40):
        writer.write(np.full((60, 80, 3), i * 5, np.uint8))
    writer.release()
    return path


def test_camera_check_measures_frames(video):
    result = check_camera(str(video), seconds=2.0, min_fps=10.0)
    assert result.status == OK and "40 frames of 80x60" in result.detail and "frames/s achieved" in result.detail
    slow = check_camera(str(video), seconds=2.0, min_fps=1e6)
    assert slow.status == WARN and "lower the resolution" in slow.fix


def test_camera_check_fails_with_fix():
    result = check_camera("/dev/video63", seconds=0.5, min_fps=10.0)
    assert result.status == FAIL and "no frames" in result.detail and "v4l2-ctl" in result.fix
    assert check_camera("/nonexistent/clip.mp4", 0.5, 10.0).status == FAIL


def test_gamepad_check_with_virtual_pad(tmp_path):
    from mile_ros.robot.virtual_joystick import VirtualJoystick

    pad = VirtualJoystick(axes=6, buttons=12, hats=1)
    missing = check_gamepad("sdl")
    assert missing.status == FAIL and "no gamepad" in missing.detail and "PS button" in missing.fix
    pad.attach()
    try:
        result = check_gamepad("sdl")
        assert result.status == OK and "'Virtual Controller': 8 axes, 12 buttons" in result.detail
        assert "takeover=button 9" in result.detail
        other = check_gamepad("ps3")  # the PS3 layout is written for 6 axes and 17 buttons
        assert other.status == WARN and "written for 6 axes and 17 buttons" in other.detail
        big = tmp_path / "big.yaml"
        big.write_text((CONFIG / "joy_sdl.yaml").read_text().replace("home: 6", "home: 20")
                       .replace("buttons_count: 12", "buttons_count: 24"))
        too_small = check_gamepad(str(big))
        assert too_small.status == FAIL and "needs 4 axes and 21 buttons" in too_small.detail
    finally:
        pad.close()


def test_r3m_check(tmp_path):
    import torch

    from mile_ros.robot.r3m import save_random_r3m_checkpoint

    assert check_r3m("").status == WARN
    path = save_random_r3m_checkpoint(tmp_path / "model.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = check_r3m(str(path))
    finally:
        torch.set_num_threads(threads)
    assert result.status == OK and "output 2048-d" in result.detail
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    bad = check_r3m(str(junk))
    assert bad.status == FAIL and "cannot read" in bad.detail


def test_disk_robot_and_dds(tmp_path):
    assert check_disk(str(tmp_path), 0.001).status == OK
    assert check_disk(str(tmp_path / "not" / "yet"), 0.001).status == OK  # checks the nearest existing parent
    full = check_disk(str(tmp_path), 1e9)
    assert full.status == FAIL and "want" in full.detail
    robot = check_robot_library()
    assert robot.status == FAIL and "xsarm_control" in robot.fix
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    dds = check_dds(timeout=30.0)
    assert dds.status == OK and "rmw_" in dds.detail


def test_doctor_command(video, tmp_path):
    env = {**os.environ, "ROS_DOMAIN_ID": str(os.getpid() % 100 + 20), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    result = subprocess.run(
        [sys.executable, "-c", "from mile_ros.cli.main import main; raise SystemExit(main())", "doctor",
         "--skip", "r3m", "--camera", str(video), "--camera-seconds", "1", "--joy-mapping", "sdl",
         "--bag-dir", str(tmp_path), "--min-free-gb", "0.001"],
        env=env, capture_output=True, text=True, timeout=180)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr  # no robot library and no pad here
    assert "[  ok] rclpy/DDS" in out and "[  ok] camera" in out and "[  ok] disk" in out
    assert "[FAIL] robot library" in out and "[FAIL] gamepad" in out
    assert "3/5 checks passed; fix: robot library, gamepad" in out
