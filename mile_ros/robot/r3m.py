"""The R3M visual encoder (ResNet-50, 2048-d) loaded from an R3M checkpoint, with R3M's preprocessing.

Checkpoint layout (facebookresearch/r3m ``model.pt``): a dict whose ``'r3m'`` entry is the state dict of
the ``DataParallel``-wrapped R3M module, so encoder keys read ``module.convnet.<torchvision resnet50 key>``;
the language-head keys (``lang_enc``, ``lang_rew``) are dropped, as R3M's own loader does for vision use.

Preprocessing, as R3M's forward: RGB as float in [0, 255], divided by 255, then, for images that are not
224x224, ``Resize(256)`` (shorter side to 256, bilinear with torchvision's default antialiasing) and
``CenterCrop(224)``, then ImageNet normalisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "R3M_DIM", "R3MCheckpointError", "R3MEncoder", "load_r3m_convnet",
           "preprocess", "save_random_r3m_checkpoint"]

R3M_DIM = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREFIX = "module.convnet."
LANGUAGE_KEYS = ("lang_enc", "lang_rew")


class R3MCheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not an R3M ResNet-50."""


def build_resnet50() -> torch.nn.Module:
    """torchvision's resnet50, untrained, with ``fc`` replaced by an identity (2048-d output)."""
    try:
        from torchvision.models import resnet50
    except ImportError as exc:
        raise ImportError("the R3M encoder needs torchvision: pip install 'mile_ros[vision]' "
                          "(torch==2.14.1 torchvision==0.29.1)") from exc
    net = resnet50(weights=None)
    net.fc = torch.nn.Identity()
    return net


def _read(path: Path) -> Any:
    if not path.is_file():
        raise R3MCheckpointError(f"R3M checkpoint {path} does not exist (download R3M's resnet50 model.pt "
                                 "from facebookresearch/r3m and give its path)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, pickled objects beyond tensors
        raise R3MCheckpointError(f"cannot read R3M checkpoint {path}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc


def convnet_state_dict(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """The ResNet weights from a loaded R3M checkpoint, prefix stripped, language head dropped."""
    if not isinstance(checkpoint, dict) or "r3m" not in checkpoint:
        keys = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise R3MCheckpointError(f"{source} is not an R3M checkpoint: expected a dict with an 'r3m' entry, "
                                 f"got {keys}")
    state = checkpoint["r3m"]
    if not isinstance(state, dict):
        raise R3MCheckpointError(f"{source}: 'r3m' is a {type(state).__name__}, expected a state dict")
    vision = {k: v for k, v in state.items() if not any(lang in k for lang in LANGUAGE_KEYS)}
    convnet = {k[len(PREFIX):]: v for k, v in vision.items() if k.startswith(PREFIX)}
    other = [k for k in vision if not k.startswith(PREFIX)]
    if not convnet:
        raise R3MCheckpointError(f"{source}: no '{PREFIX}*' keys (found e.g. {list(vision)[:3]}); is it the "
                                 "state dict of R3M wrapped in DataParallel?")
    if other:
        raise R3MCheckpointError(f"{source}: unexpected keys outside the encoder: {other[:5]}")
    return convnet


def load_r3m_convnet(path: str | os.PathLike) -> torch.nn.Module:
    """The R3M ResNet-50 with the checkpoint's weights (eval mode, CPU)."""
    path = Path(path)
    weights = convnet_state_dict(_read(path), str(path))
    net = build_resnet50()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise R3MCheckpointError(f"{path} is not an R3M ResNet-50: {len(missing)} weights missing (e.g. "
                                 f"{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    wrong = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in weights.items()
             if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        k, got, want = wrong[0]
        raise R3MCheckpointError(f"{path} is not an R3M ResNet-50: {len(wrong)} weights have the wrong "
                                 f"shape, e.g. {k} {got} instead of {want} (R3M's resnet18/34 are not "
                                 "supported)")
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise R3MCheckpointError(f"{path} has NaN or infinite weights in {bad[:3]}")
    net.load_state_dict(weights, strict=True)
    return net.eval()


def preprocess(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 255]) RGB images, (H, W, 3) or (N, H, W, 3) -> normalised (N, 3, 224, 224)."""
    from torchvision.transforms import CenterCrop, Resize

    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB images shaped (H, W, 3) or (N, H, W, 3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != (224, 224):
        x = CenterCrop(224)(Resize(256)(x))
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch sees no CUDA GPU; use device:=cpu")
    return torch.device(device)


class R3MEncoder:
    """Images in, 2048-d R3M embeddings out."""

    def __init__(self, checkpoint: str | os.PathLike | None, device: str = "cpu",
                 allow_random_weights: bool = False) -> None:
        """``checkpoint=None`` is refused unless ``allow_random_weights`` (tests and demos only)."""
        if checkpoint:
            net = load_r3m_convnet(checkpoint)
            self.random_weights = False
        elif allow_random_weights:
            net = build_resnet50().eval()
            self.random_weights = True
        else:
            raise R3MCheckpointError("no R3M checkpoint given: set the checkpoint path (R3M's resnet50 "
                                     "model.pt); random weights only with allow_random_weights")
        self.device = resolve_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one input size all session: let cuDNN pick its fastest
        self.net = net.to(self.device)

    @torch.inference_mode()
    def encode(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """(H, W, 3) or (N, H, W, 3) RGB -> (N, 2048) float32."""
        x = torch.as_tensor(images) if isinstance(images, np.ndarray) else images
        x = x.to(self.device)
        out = self.net(preprocess(x))
        return out.float().cpu().numpy()


def save_random_r3m_checkpoint(path: str | os.PathLike, seed: int = 0) -> Path:
    """A random ResNet-50 saved in R3M's layout, language head included (for tests and demos)."""
    torch.manual_seed(seed)
    net = build_resnet50()
    state = {PREFIX + k: v for k, v in net.state_dict().items()}
    state["module.lang_enc.weight"] = torch.zeros(4, 4)  # R3M's language head: dropped by the loader
    state["module.lang_rew.0.weight"] = torch.zeros(4, 4)
    path = Path(path)
    torch.save({"r3m": state}, path)
    return path
