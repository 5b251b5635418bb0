"""Running a policy online: frame stacking one step at a time, actions and predicted takeovers."""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from .checkpoint import MileCheckpoint
from .networks import PolicyNet

__all__ = ["FrameStacker", "PolicyRunner"]


class FrameStacker:
    """Online twin of :func:`~mile_ros.learning.dataset.stack_frames`: same order and padding."""

    def __init__(self, obs_dim: int, k: int, padding: str = "repeat") -> None:
        if padding not in ("repeat", "zero"):
            raise ValueError(f"padding must be 'repeat' or 'zero', got {padding!r}")
        self.obs_dim, self.k, self.padding = obs_dim, k, padding
        self._frames: deque[np.ndarray] = deque(maxlen=k + 1)

    def reset(self) -> None:
        """Start a new episode: the next frame is padded as an episode's first."""
        self._frames.clear()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add the current frame and return the stacked observation (oldest first)."""
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if frame.shape[0] != self.obs_dim:
            raise ValueError(f"observation has {frame.shape[0]} values, the policy expects {self.obs_dim}")
        if not np.isfinite(frame).all():
            raise ValueError("observation contains NaN or infinite values")
        if not self._frames:
            pad = frame if self.padding == "repeat" else np.zeros_like(frame)
            self._frames.extend([pad] * self.k)
        self._frames.append(frame)
        return np.concatenate(self._frames)


class PolicyRunner:
    """A checkpoint's policy driven one frame at a time (simulation rollouts and the policy node)."""

    def __init__(self, checkpoint: MileCheckpoint, deterministic: bool = True, seed: int | None = None) -> None:
        self.checkpoint = checkpoint
        self.spec = checkpoint.spec
        self.policy: PolicyNet = checkpoint.policy.eval()
        self.intervention_model = checkpoint.intervention_model()
        self.stacker = FrameStacker(self.spec.obs_dim, self.spec.frame_stack, checkpoint.padding)
        self.deterministic = deterministic
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.last_stacked: np.ndarray | None = None

    def reset(self) -> None:
        self.stacker.reset()
        self.last_stacked = None

    @torch.no_grad()
    def act(self, frame: np.ndarray) -> np.ndarray | int:
        """The action for the current frame (clipped to the spec's bounds when it has them)."""
        self.last_stacked = self.stacker.push(frame)
        obs = torch.from_numpy(self.last_stacked).unsqueeze(0)
        action = self.policy.act(obs, self.deterministic, self.generator)[0]
        if self.spec.discrete:
            return int(action)
        out = action.numpy().astype(np.float32)
        if self.spec.action_low is not None and self.spec.action_high is not None:
            out = np.clip(out, self.spec.action_low, self.spec.action_high)
        return out

    @torch.no_grad()
    def intervention_probability(self) -> float | None:
        """``P(I=1|s)`` for the last stacked observation, from the checkpoint's mental model."""
        if self.intervention_model is None or self.last_stacked is None:
            return None
        obs = torch.from_numpy(self.last_stacked).unsqueeze(0)
        return float(self.intervention_model.intervention_probability(obs)[0])
