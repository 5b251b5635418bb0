"""r3m_encoder: camera images -> 2048-d R3M embeddings (stamped vector, the image's stamp).

Logic: :mod:`mile_ros.robot.r3m`. Only the newest image is kept: while one is being encoded, newer
arrivals replace the waiting one, so the output never lags behind a queue of stale frames. The node
refuses to start without a readable R3M checkpoint unless ``allow_random_weights`` is true.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from mile_ros.nodes.common import Param, declare_parameters, qos, vector_msg
from mile_ros.robot.r3m import R3M_DIM, R3MEncoder

EMBEDDING_NAMES = tuple(f"r3m_{i:04d}" for i in range(R3M_DIM))

PARAMETERS = (
    Param("checkpoint", "", "path to R3M's resnet50 model.pt (dict 'r3m' -> DataParallel state dict)"),
    Param("allow_random_weights", False, "run with an untrained ResNet-50 when no checkpoint is given "
                                         "(tests and demos only: the embeddings mean nothing)"),
    Param("device", "cpu", "cpu, cuda, cuda:N or auto"),
    Param("cpu_threads", 0, "torch CPU threads (0: torch's choice; 1 is often faster on a busy machine)",
          (0, 256)),
    Param("image_topic", "camera/image_raw", "images to encode (rgb8, bgr8 or mono8)"),
    Param("embedding_topic", "camera/embedding", "where the embeddings go"),
    Param("report_period_s", 10.0, "how often the achieved rate and dropped frames are logged",
          (0.5, 3600.0)),
)


def image_to_rgb(msg: Image) -> np.ndarray:
    """A sensor_msgs/Image as an (H, W, 3) uint8 RGB array; other encodings are refused."""
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported (rgb8, bgr8, mono8)")
    if msg.step < msg.width * channels or len(msg.data) < msg.step * msg.height:
        raise ValueError(f"image data too short: {len(msg.data)} bytes for {msg.height} rows of {msg.step}")
    rows = np.frombuffer(bytes(msg.data), np.uint8)[: msg.step * msg.height].reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return pixels


class R3MEncoderNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__("r3m_encoder", **node_options)
        p = declare_parameters(self, PARAMETERS, strict=True)  # read at start: read-only
        if p["cpu_threads"] > 0:
            import torch

            torch.set_num_threads(p["cpu_threads"])
        self.encoder = R3MEncoder(p["checkpoint"] or None, p["device"], p["allow_random_weights"])
        if self.encoder.random_weights:
            self.get_logger().warning("running with RANDOM weights (allow_random_weights): not for learning")
        self.get_logger().info(f"R3M encoder ready on {self.encoder.device}")
        self.pub = self.create_publisher(JointState, p["embedding_topic"], qos("sensor"))
        self.create_subscription(Image, p["image_topic"], self.on_image, qos("sensor"))
        self._latest: Image | None = None
        self._cond = threading.Condition()
        self._stop = False
        self.received = self.encoded = self.dropped = 0
        self._window = (time.monotonic(), 0)
        self._worker = threading.Thread(target=self._encode_loop, name="r3m_worker", daemon=True)
        self._worker.start()
        self.create_timer(p["report_period_s"], self.report)

    def on_image(self, msg: Image) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1  # a newer frame replaces the one still waiting
            self._latest = msg
            self.received += 1
            self._cond.notify()

    def _encode_loop(self) -> None:
        while True:
            with self._cond:
                while self._latest is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                msg, self._latest = self._latest, None
            try:
                embedding = self.encoder.encode(image_to_rgb(msg))[0]
            except ValueError as exc:
                self.get_logger().error(f"image skipped: {exc}", throttle_duration_sec=5.0)
                continue
            out = vector_msg(0, EMBEDDING_NAMES, embedding, frame_id=msg.header.frame_id)
            out.header.stamp = msg.header.stamp  # the image's stamp: the step it belongs to
            self.pub.publish(out)
            self.encoded += 1

    def report(self) -> None:
        start, count = self._window
        now = time.monotonic()
        rate = (self.encoded - count) / max(now - start, 1e-9)
        self._window = (now, self.encoded)
        self.get_logger().info(f"encoded {self.encoded} of {self.received} images ({rate:.1f} Hz lately), "
                               f"dropped {self.dropped} stale")

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._worker.join(timeout=30)


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(R3MEncoderNode, args)


if __name__ == "__main__":
    sys.exit(main())
