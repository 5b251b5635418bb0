"""The R3M encoder: R3M's checkpoint layout through the real loader, its preprocessing by hand, bad
checkpoints refused, and the node over DDS (stamps, newest-frame-only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mile_ros.robot.r3m import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREFIX,
    R3M_DIM,
    R3MCheckpointError,
    R3MEncoder,
    build_resnet50,
    load_r3m_convnet,
    preprocess,
    save_random_r3m_checkpoint,
)

RNG = np.random.default_rng(7)
IMAGE = RNG.integers(0, 256, (256, 320, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_random_r3m_checkpoint(tmp_path_factory.mktemp("r3m") / "model.pt", seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    """ResNet-50 on a busy 2-core machine: one thread avoids OpenMP contention (10x faster measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def by_hand(image: np.ndarray) -> np.ndarray:
    """R3M's preprocessing written out for an image whose shorter side is already 256 (Resize is a no-op)."""
    h, w, _ = image.shape
    top, left = (h - 224) // 2, (w - 224) // 2
    crop = image[top:top + 224, left:left + 224].astype(np.float64) / 255.0
    return ((crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)


def test_preprocess_224_is_normalisation_only():
    image = RNG.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    expected = ((image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess(image)[0].numpy(), expected, atol=1e-5)


def test_preprocess_center_crop_by_hand():
    np.testing.assert_allclose(preprocess(IMAGE)[0].numpy(), by_hand(IMAGE), atol=1e-5)
    batch = preprocess(np.stack([IMAGE, IMAGE[:, ::-1]]))
    assert batch.shape == (2, 3, 224, 224)
    np.testing.assert_allclose(batch[1].numpy(), by_hand(np.ascontiguousarray(IMAGE[:, ::-1])), atol=1e-5)


def test_preprocess_resizes_other_sizes():
    small = RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = preprocess(small)
    assert out.shape == (1, 3, 224, 224)
    # a uniform image stays uniform through resize and crop: the value is the normalised colour
    flat = np.full((90, 300, 3), (255, 0, 128), np.uint8)
    expected = (np.array([255, 0, 128]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(preprocess(flat)[0].mean(dim=(1, 2)).numpy(), expected, atol=1e-4)
    with pytest.raises(ValueError, match="RGB"):
        preprocess(np.zeros((10, 10), np.uint8))


def test_loads_r3m_layout_and_encodes(checkpoint):
    raw = torch.load(checkpoint, weights_only=True)["r3m"]
    assert any(k.startswith(PREFIX + "layer4.") for k in raw) and "module.lang_enc.weight" in raw
    encoder = R3MEncoder(checkpoint)
    assert not encoder.random_weights
    out = encoder.encode(IMAGE)
    assert out.shape == (1, R3M_DIM) and out.dtype == np.float32 and np.isfinite(out).all()
    # the checkpoint's weights are the ones used: same seed -> same network -> same embedding
    torch.manual_seed(3)
    reference = build_resnet50().eval()
    with torch.inference_mode():
        expected = reference(torch.as_tensor(by_hand(IMAGE), dtype=torch.float32).unsqueeze(0)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    torch.manual_seed(4)
    with torch.inference_mode():
        other = build_resnet50().eval()(torch.as_tensor(by_hand(IMAGE), dtype=torch.float32).unsqueeze(0))
    assert not np.allclose(out, other.numpy(), atol=1e-3)


def test_bad_checkpoints_are_refused(tmp_path, checkpoint):
    with pytest.raises(R3MCheckpointError, match="does not exist"):
        load_r3m_convnet(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(R3MCheckpointError, match="cannot read"):
        load_r3m_convnet(junk)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:100_000])
    with pytest.raises(R3MCheckpointError, match="cannot read"):
        load_r3m_convnet(truncated)
    cases = {
        "no_r3m_entry": ({"model": {}}, "'r3m' entry"),
        "unwrapped": ({"r3m": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, "DataParallel"),
        "resnet18": ({"r3m": {PREFIX + k: v for k, v in _resnet18_state().items()}}, "not an R3M ResNet-50"),
        "extra": ({"r3m": {PREFIX + "conv1.weight": torch.zeros(1), "module.other": torch.zeros(1)}},
                  "unexpected keys"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(content, path)
        with pytest.raises(R3MCheckpointError, match=message):
            load_r3m_convnet(path)
    state = torch.load(checkpoint, weights_only=True)
    state["r3m"][PREFIX + "layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    nan_path = tmp_path / "nan.pt"
    torch.save(state, nan_path)
    with pytest.raises(R3MCheckpointError, match="NaN"):
        load_r3m_convnet(nan_path)


def _resnet18_state():
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.fc = torch.nn.Identity()
    return net.state_dict()


def test_random_weights_only_when_asked():
    with pytest.raises(R3MCheckpointError, match="allow_random_weights"):
        R3MEncoder(None)
    assert R3MEncoder(None, allow_random_weights=True).random_weights


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without a GPU")
def test_cuda_requested_without_gpu():
    with pytest.raises(RuntimeError, match="no CUDA"):
        R3MEncoder(None, device="cuda", allow_random_weights=True)


# -- the node, in its own process, over DDS -----------------------------------------------------------

@pytest.mark.slow
def test_encoder_node_over_dds(checkpoint):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, JointState

    from mile_ros.nodes.common import qos, to_time

    domain_id = os.getpid() % 100 + 20
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    proc = subprocess.Popen([sys.executable, "-m", "mile_ros.nodes.r3m_encoder", "--ros-args",
                             "-p", f"checkpoint:={checkpoint}", "-p", "cpu_threads:=1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("r3m_test", context=context)
    got: list[JointState] = []
    node.create_subscription(JointState, "/camera/embedding", got.append, qos("sensor"))
    pub = node.create_publisher(Image, "/camera/image_raw", qos("sensor"))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def image(stamp_ns: int, pixels: np.ndarray) -> Image:
        msg = Image()
        msg.header.stamp = to_time(stamp_ns)
        msg.header.frame_id = "camera"
        msg.height, msg.width, msg.encoding, msg.step = 256, 320, "rgb8", 320 * 3
        msg.data = pixels.tobytes()
        return msg

    def spin_until(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if proc.poll() is not None:
                raise AssertionError(f"encoder exited while waiting for {what}:\n{proc.stdout.read()}")
            executor.spin_once(timeout_sec=0.05)
        raise AssertionError(f"timed out waiting for {what}")

    try:
        spin_until(lambda: pub.get_subscription_count() > 0, 120, "the encoder to subscribe")
        first = 1_700_000_000_123_456_789
        resend = [0.0]

        def first_answered() -> bool:  # resend until discovery has completed both ways
            if not got and time.monotonic() > resend[0]:
                pub.publish(image(first, IMAGE))
                resend[0] = time.monotonic() + 2.0
            return bool(got)

        spin_until(first_answered, 120, "a first embedding")
        msg = got[-1]
        assert len(msg.position) == R3M_DIM and msg.name[0] == "r3m_0000" and len(msg.name) == R3M_DIM
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
        expected = R3MEncoder(checkpoint).encode(IMAGE)[0]
        np.testing.assert_allclose(np.array(msg.position), expected, rtol=1e-3, atol=1e-3)

        # a burst faster than the encoder: stale frames are dropped, the newest one is encoded
        got.clear()
        stamps = [first + (i + 1) * 10_000_000 for i in range(8)]
        for stamp in stamps:
            pub.publish(image(stamp, IMAGE))
            executor.spin_once(timeout_sec=0.005)
        last = (stamps[-1] // 1_000_000_000, stamps[-1] % 1_000_000_000)
        spin_until(lambda: any((m.header.stamp.sec, m.header.stamp.nanosec) == last for m in got), 120,
                   "the newest frame's embedding")
        time.sleep(0.5)
        executor.spin_once(timeout_sec=0.1)
        seen = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in got]
        burst = [s for s in seen if s in stamps]  # (late answers to the first image may precede them)
        assert len(burst) < len(stamps), f"{len(burst)} embeddings for a burst of {len(stamps)}: none dropped"
        assert burst == sorted(burst) and burst[-1] == stamps[-1]
    finally:
        node.destroy_node()
        context.try_shutdown()
        proc.terminate()
        proc.communicate(timeout=30)  # drains the pipe, or a chatty node blocks on exit


@pytest.mark.slow
def test_node_refuses_to_start_without_checkpoint(tmp_path):
    env = {**os.environ, "ROS_DOMAIN_ID": str(os.getpid() % 100 + 20),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    result = subprocess.run([sys.executable, "-m", "mile_ros.nodes.r3m_encoder", "--ros-args", "-p",
                             f"checkpoint:={tmp_path / 'nope.pt'}"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "does not exist" in result.stdout + result.stderr
