"""The simulation side of the Metaworld bridge: stepping, simulated time and episode ends.

Simulated time advances one control period per step and never goes back (a reset moves it one
period on), so stamps are unique across a whole session and ``/clock`` is monotonic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    def __init__(self, env, control_period_ns: int, max_episode_steps: int = 0, start_ns: int = 1_000_000_000) -> None:
        if control_period_ns <= 0:
            raise ValueError("control period must be positive")
        self.env = env
        self.period = int(control_period_ns)
        self.max_steps = int(max_episode_steps) if max_episode_steps > 0 else int(env.max_steps)
        self.now_ns = int(start_ns)
        self.current: StepOutput | None = None
        self.ended = True

    def reset(self, seed: int | None) -> StepOutput:
        frame = self.env.reset(seed)
        self.now_ns += self.period
        self.ended = False
        self.current = StepOutput(np.asarray(frame), self.now_ns, False, False, "", 0, 0.0)
        return self.current

    def step(self, action: np.ndarray) -> StepOutput:
        if self.ended or self.current is None:
            raise RuntimeError("no episode running: reset first")
        result = self.env.step(np.asarray(action, dtype=np.float64))
        self.now_ns += self.period
        steps = self.current.steps + 1
        reason = ""
        if result.success and result.terminated:
            reason = "success"
        elif result.terminated:
            reason = "terminated"
        elif steps >= self.max_steps or result.truncated:
            reason = "time_limit"
        self.ended = bool(reason)
        ret = self.current.episode_return + float(result.reward)
        self.current = StepOutput(
            np.asarray(result.obs), self.now_ns, bool(result.success), self.ended, reason, steps, ret
        )
        return self.current
