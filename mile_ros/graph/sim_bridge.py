"""The simulation side of the Metaworld bridge: stepping, simulated time and episode ends.

Simulated time advances one control period per step and never goes back (a reset moves it one
period on), so stamps are unique across a whole session and ``/clock`` is monotonic. The episode's
phases and ends are :class:`mile_ros.graph.episode.Episode`, the same machine as the real arm's driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mile_ros.graph.episode import Episode

__all__ = ["BridgeCore", "StepOutput"]


@dataclass
class StepOutput:
    frame: np.ndarray
    stamp_ns: int
    success: bool
    ended: bool
    reason: str  # "" | success | time_limit | terminated
    steps: int
    episode_return: float


class BridgeCore:
    """``max_episode_steps`` 0: the task's own limit (``env.max_steps``)."""

    def __init__(self, env, control_period_ns: int, max_episode_steps: int = 0, start_ns: int = 1_000_000_000) -> None:
        if control_period_ns <= 0:
            raise ValueError("control period must be positive")
        self.env = env
        self.period = int(control_period_ns)
        self.max_steps = int(max_episode_steps) if max_episode_steps > 0 else int(env.max_steps)
        self.episode = Episode(self.max_steps)
        self.now_ns = int(start_ns)
        self.current: StepOutput | None = None

    @property
    def ended(self) -> bool:
        """No episode to step or resume: before the first reset and after an end."""
        return self.episode.ended

    @property
    def running(self) -> bool:
        """An episode is running (started, not paused, not ended)."""
        return self.episode.running

    def pause(self) -> None:
        self.episode.pause()

    def resume(self) -> bool:
        """Resume a paused episode; False when there is none (after its end: reset first)."""
        return self.episode.resume()

    def reset(self, seed: int | None) -> StepOutput:
        frame = self.env.reset(seed)
        self.now_ns += self.period
        self.episode.start()
        self.current = StepOutput(np.asarray(frame), self.now_ns, False, False, "", 0, 0.0)
        return self.current

    def step(self, action: np.ndarray) -> StepOutput:
        if not self.episode.running or self.current is None:
            raise RuntimeError(f"no episode running (it is {self.episode.phase}): reset first")
        result = self.env.step(np.asarray(action, dtype=np.float64))
        self.now_ns += self.period
        end = self.episode.step(result.reward, result.success, result.terminated, result.truncated)
        self.current = StepOutput(
            np.asarray(result.obs),
            self.now_ns,
            bool(result.success),
            end is not None,
            end.reason if end else "",
            self.episode.steps,
            self.episode.episode_return,
        )
        return self.current
