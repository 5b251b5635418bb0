"""The intervention record: one row per timestep, intervened or not, with frame stacking."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .spec import Spec

__all__ = ["DatasetError", "InterventionDataset", "holdout_mask", "stack_frames"]

FORMAT_VERSION = 1
NO_ACTION = -1  # discrete human action where the human did not intervene


class DatasetError(ValueError):
    """A row or file that cannot be part of an intervention dataset."""


def holdout_mask(episodes: np.ndarray, val_fraction: float, seed: int = 0) -> np.ndarray:
    """Rows of held-out episodes: whole episodes, at least one when there are two or more, never all."""
    eps = np.unique(episodes)
    if val_fraction <= 0 or len(eps) < 2:
        return np.zeros(len(episodes), bool)
    n_val = min(max(round(val_fraction * len(eps)), 1), len(eps) - 1)
    return np.isin(episodes, np.random.default_rng(seed).permutation(eps)[:n_val])


def stack_frames(obs: np.ndarray, episode: np.ndarray, k: int, padding: str = "repeat") -> np.ndarray:
    """Concatenate each row with the previous ``k`` rows of its episode, oldest first.

    Rows must be grouped by episode and ordered by step. At an episode's start the missing frames
    are the first frame repeated (``padding="repeat"``) or zeros (``padding="zero"``).
    """
    n, d = obs.shape
    out = np.empty((n, d * (k + 1)), dtype=np.float32)
    start = np.zeros(n, dtype=np.int64)
    if n:
        new_episode = np.r_[True, episode[1:] != episode[:-1]]
        start = np.maximum.accumulate(np.where(new_episode, np.arange(n), 0))
    idx = np.arange(n)
    for j in range(k + 1):
        lag = k - j
        src = idx - lag
        before_start = src < start
        src = np.where(before_start, start, src)
        block = obs[src]
        if padding == "zero":
            block = np.where(before_start[:, None], 0.0, block)
        elif padding != "repeat":
            raise ValueError(f"padding must be 'repeat' or 'zero', got {padding!r}")
        out[:, j * d : (j + 1) * d] = block
    return out


@dataclass
class InterventionDataset:
    """Timesteps ``(observation, robot action, intervention flag, human action, episode, step)``.

    ``observation`` holds single frames; :meth:`stacked_observations` adds the history the networks
    see. Continuous human actions are NaN where ``I = 0``; discrete ones are ``-1``.
    """

    spec: Spec
    observation: np.ndarray
    robot_action: np.ndarray
    intervention: np.ndarray
    human_action: np.ndarray
    episode: np.ndarray
    step: np.ndarray

    def __post_init__(self) -> None:
        act_dtype = np.int64 if self.spec.discrete else np.float32
        self.observation = np.asarray(self.observation, dtype=np.float32).reshape(-1, self.spec.obs_dim)
        n = len(self.observation)
        act_shape = (n,) if self.spec.discrete else (n, self.spec.act_dim)
        self.robot_action = np.asarray(self.robot_action, dtype=act_dtype).reshape(act_shape)
        self.human_action = np.asarray(self.human_action, dtype=act_dtype).reshape(act_shape)
        self.intervention = np.asarray(self.intervention, dtype=bool).reshape(n)
        self.episode = np.asarray(self.episode, dtype=np.int64).reshape(n)
        self.step = np.asarray(self.step, dtype=np.int64).reshape(n)
        self.validate()
        order = np.lexsort((self.step, self.episode))
        if not np.array_equal(order, np.arange(n)):
            for name in ("observation", "robot_action", "intervention", "human_action", "episode", "step"):
                setattr(self, name, getattr(self, name)[order])

    def __len__(self) -> int:
        return len(self.observation)

    # ---- validation -------------------------------------------------------------------------

    def _fail(self, rows: np.ndarray, what: str) -> None:
        i = int(np.flatnonzero(rows)[0])
        count = int(rows.sum())
        raise DatasetError(
            f"episode {int(self.episode[i])} step {int(self.step[i])}: {what}"
            + (f" ({count} rows in all)" if count > 1 else "")
        )

    def validate(self) -> None:
        """Refuse non-finite rows and interventions without a human action, naming the first one."""
        bad = ~np.isfinite(self.observation).all(1)
        if bad.any():
            self._fail(bad, "observation is NaN or infinite")
        if self.spec.discrete:
            bad = (self.robot_action < 0) | (self.robot_action >= self.spec.act_dim)
            if bad.any():
                self._fail(bad, f"robot action outside 0..{self.spec.act_dim - 1}")
            missing = self.intervention & ((self.human_action < 0) | (self.human_action >= self.spec.act_dim))
        else:
            bad = ~np.isfinite(self.robot_action).all(1)
            if bad.any():
                self._fail(bad, "robot action is NaN or infinite")
            missing = self.intervention & ~np.isfinite(self.human_action).all(1)
        if missing.any():
            self._fail(missing, "intervention (I=1) without a finite human action")
        key = self.episode * (int(self.step.max(initial=0)) + 1) + self.step
        if len(np.unique(key)) != len(key):
            _, first = np.unique(key, return_index=True)
            dup = np.ones(len(key), bool)
            dup[first] = False
            self._fail(dup, "duplicate (episode, step)")

    # ---- views ------------------------------------------------------------------------------

    def stacked_observations(self, padding: str = "repeat") -> np.ndarray:
        """Observations with the previous ``spec.frame_stack`` steps, as the networks see them."""
        return stack_frames(self.observation, self.episode, self.spec.frame_stack, padding)

    @property
    def episodes(self) -> np.ndarray:
        return np.unique(self.episode)

    @property
    def intervention_rate(self) -> float:
        return float(self.intervention.mean()) if len(self) else 0.0

    def select(self, rows: np.ndarray) -> InterventionDataset:
        """A new dataset with the given rows (boolean mask or indices)."""
        return InterventionDataset(
            self.spec,
            self.observation[rows],
            self.robot_action[rows],
            self.intervention[rows],
            self.human_action[rows],
            self.episode[rows],
            self.step[rows],
        )

    def split_by_episode(self, val_fraction: float, seed: int = 0) -> tuple[InterventionDataset, InterventionDataset]:
        """Split into training and held-out datasets by whole episodes (see :func:`holdout_mask`)."""
        mask = holdout_mask(self.episode, val_fraction, seed)
        return self.select(~mask), self.select(mask)

    @classmethod
    def concatenate(cls, parts: Sequence[InterventionDataset]) -> InterventionDataset:
        """Join datasets of one spec; episode ids must already be distinct."""
        if not parts:
            raise DatasetError("nothing to concatenate")
        spec = parts[0].spec
        for p in parts[1:]:
            mismatch = spec.describe_mismatch(p.spec)
            if mismatch:
                raise DatasetError(f"cannot join datasets: {mismatch}")
        return cls(
            spec,
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in ("observation", "robot_action", "intervention", "human_action", "episode", "step")
            ),
        )

    # ---- files ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` atomically (never a half-written file under the final name)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "spec": self.spec.to_dict()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                    observation=self.observation,
                    robot_action=self.robot_action,
                    intervention=self.intervention,
                    human_action=self.human_action,
                    episode=self.episode,
                    step=self.step,
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> InterventionDataset:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("format_version") != FORMAT_VERSION:
                    raise DatasetError(
                        f"{path}: dataset format {meta.get('format_version')}, expected {FORMAT_VERSION}"
                    )
                arrays = {
                    k: z[k] for k in ("observation", "robot_action", "intervention", "human_action", "episode", "step")
                }
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f"{path}: not a mile_ros dataset ({exc})") from exc
        return cls(Spec.from_dict(meta["spec"]), **arrays)
