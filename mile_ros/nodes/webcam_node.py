"""webcam_node: an OpenCV camera published as ``sensor_msgs/Image`` (rgb8, sensor-data QoS).

Logic: :mod:`mile_ros.robot.camera`. A capture thread reads the source and publishes the newest frame at
no more than ``rate_hz`` (files and image sequences are paced at ``rate_hz``). Connection changes are
logged and published on ``/camera/status`` (``std_msgs/String`` JSON: state, message, frames, rate_hz).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from mile_ros.nodes.common import Param, declare_parameters, qos
from mile_ros.robot.camera import Camera, CameraConfig, CameraEvent, parse_crop

STATUS_TOPIC = "camera/status"

PARAMETERS = (
    Param(
        "source",
        "0",
        "device index (0), device path (/dev/video0), stream URL, video file or image "
        "sequence pattern (frames/%04d.png)",
    ),
    Param("kind", "auto", "auto, device, stream, file or sequence (auto: from the source's form)"),
    Param("width", 0, "requested capture width (devices); 0: the device's default", (0, 8192)),
    Param("height", 0, "requested capture height (devices); 0: the device's default", (0, 8192)),
    Param("capture_fps", 0.0, "requested capture rate (devices); 0: the device's default", (0.0, 1000.0)),
    Param("rate_hz", 30.0, "most frames published per second (files: the playback rate)", (0.1, 1000.0)),
    Param("crop", "", "x,y,width,height in captured pixels, applied before resizing; empty: none"),
    Param("output_width", 0, "resize to this width after cropping; 0: keep", (0, 8192)),
    Param("output_height", 0, "resize to this height after cropping; 0: keep", (0, 8192)),
    Param("loop", False, "files and sequences: start again at the end"),
    Param("reconnect_s", 1.0, "retry period while the source is missing", (0.05, 60.0)),
    Param("frame_id", "camera", "header.frame_id of the images"),
    Param("image_topic", "camera/image_raw", "where the images go"),
)


def image_msg(rgb: np.ndarray, stamp, frame_id: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = int(rgb.shape[1] * 3)
    msg.data = rgb.tobytes()
    return msg


class WebcamNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__("webcam_node", **node_options)
        p = declare_parameters(self, PARAMETERS, strict=True)  # read at start: read-only
        config = CameraConfig(
            source=str(p["source"]),
            kind=p["kind"],
            width=p["width"],
            height=p["height"],
            fps=p["capture_fps"],
            crop=parse_crop(p["crop"]),
            output_width=p["output_width"],
            output_height=p["output_height"],
            loop=p["loop"],
            reconnect_s=p["reconnect_s"],
        )
        self.camera = Camera(config)
        self.period = 1.0 / p["rate_hz"]
        self.frame_id = p["frame_id"]
        self.pub_image = self.create_publisher(Image, p["image_topic"], qos("sensor"))
        self.pub_status = self.create_publisher(String, STATUS_TOPIC, qos("latched"))
        self.published = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture_loop, name="webcam_capture", daemon=True)
        self._thread.start()

    def _capture_loop(self) -> None:
        next_publish = time.monotonic()
        while not self._stop.is_set():
            try:
                rgb, events = self.camera.read()
            except Exception as exc:  # a bad crop or a broken backend: say so and stop capturing
                self.get_logger().fatal(f"camera capture stopped: {exc}")
                self.report(CameraEvent("failed", str(exc)))
                return
            for event in events:
                self.report(event)
            if rgb is None:
                if self.camera.ended:
                    return
                self._stop.wait(0.05 if self.camera.connected else min(self.camera.config.reconnect_s, 0.2))
                continue
            now = time.monotonic()
            if now < next_publish:
                if not self.camera.config.live:
                    self._stop.wait(next_publish - now)  # files: pace the playback
                else:
                    continue  # live: drop this frame, the next one is newer
            next_publish = max(next_publish + self.period, time.monotonic())
            self.pub_image.publish(image_msg(rgb, self.get_clock().now().to_msg(), self.frame_id))
            self.published += 1

    def report(self, event: CameraEvent) -> None:
        if event.kind in ("opened", "reconnected", "ended"):  # rclpy wants one severity per call site
            self.get_logger().info(event.message)
        else:
            self.get_logger().error(event.message)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        status = {
            "state": event.kind,
            "message": event.message,
            "frames": self.published,
            "rate_hz": round(self.published / elapsed, 2),
        }
        self.pub_status.publish(String(data=json.dumps(status)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.camera.close()


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(WebcamNode, args)


if __name__ == "__main__":
    sys.exit(main())
