"""The real robot's observation: an R3M embedding joined, by stamp, with the end-effector position.

The embedding carries its camera image's stamp and arrives late (encoding takes a while); poses arrive
at the driver's state rate. An embedding is joined with the pose nearest to its stamp, never with
whatever pose came last, and refused (with the reason) when no pose is near enough or when the
embedding is already stale against the robot's newest pose: acting on an old picture of the scene
would be acting on a scene that is no longer there.
"""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np

__all__ = ["PoseJoiner"]


class PoseJoiner:
    """Recent end-effector positions by stamp; :meth:`join` pairs an embedding with one of them."""

    def __init__(self, max_skew_s: float, max_age_s: float, keep: int = 400) -> None:
        self.max_skew_ns = round(max_skew_s * 1e9)
        self.max_age_ns = round(max_age_s * 1e9)
        self.stamps: deque[int] = deque(maxlen=keep)
        self.positions: deque[np.ndarray] = deque(maxlen=keep)

    def add_pose(self, stamp_ns: int, position) -> None:
        pos = np.asarray(position, dtype=np.float64).reshape(3)
        if self.stamps and stamp_ns <= self.stamps[-1]:
            return  # out of order or repeated (best-effort transport): the newest pose is already here
        self.stamps.append(stamp_ns)
        self.positions.append(pos)

    def newest(self) -> int | None:
        return self.stamps[-1] if self.stamps else None

    def join(self, embedding_stamp_ns: int, embedding) -> tuple[np.ndarray | None, str]:
        """``(embedding + position, "")`` or ``(None, why not)``."""
        if not self.stamps:
            return None, "no end-effector pose yet (/robot/ee_pose)"
        age = self.stamps[-1] - embedding_stamp_ns
        if age > self.max_age_ns:
            return None, (
                f"stale embedding: {age / 1e6:.0f} ms older than the newest pose "
                f"(max_embedding_age_s {self.max_age_ns / 1e9:g})"
            )
        i = bisect.bisect_left(self.stamps, embedding_stamp_ns)
        near = [j for j in (i - 1, i) if 0 <= j < len(self.stamps)]
        best = min(near, key=lambda j: abs(self.stamps[j] - embedding_stamp_ns))
        skew = abs(self.stamps[best] - embedding_stamp_ns)
        if skew > self.max_skew_ns:
            return None, (
                f"no end-effector pose within {self.max_skew_ns / 1e6:.0f} ms of the embedding "
                f"(nearest {skew / 1e6:.0f} ms away)"
            )
        frame = np.concatenate([np.asarray(embedding, dtype=np.float64).reshape(-1), self.positions[best]])
        return frame, ""
