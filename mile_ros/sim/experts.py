"""Scripted experts as distributions ``pi_H(a|s)`` (docs/mile-model.md, "Simulated human").

Metaworld's scripted policies and Gymnasium's lunar-lander heuristic are deterministic; MILE needs a
distribution, so a continuous expert is a Gaussian of fixed standard deviation ``std`` around the
scripted action and a discrete expert puts ``1 - epsilon`` on the heuristic action and spreads
``epsilon`` uniformly over all actions. Both parameters set the scale of the value gaps that the
intervention model compares with the cost.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .envs import LUNAR_LANDER, SimEnv
from .presets import load_preset

__all__ = ["DiscreteExpert", "Expert", "GaussianExpert", "make_expert"]

# Metaworld's scripted policies warn that their gains exceed the action bounds; the environment
# clips, and so does GaussianExpert, so the warning says nothing actionable.
warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")


class Expert:
    """A scripted expert: ``act`` is its own action, ``distribution`` is ``pi_H(.|s)``."""

    discrete: bool
    act_dim: int

    def act(self, frame: np.ndarray) -> Any:
        raise NotImplementedError

    def distribution(self, frame: np.ndarray) -> Any:
        raise NotImplementedError

    def sample(self, frame: np.ndarray, rng: np.random.Generator) -> Any:
        """One draw from ``pi_H(.|s)``."""
        raise NotImplementedError


class GaussianExpert(Expert):
    """``pi_H = N(scripted action, std^2 I)``; the mean is clipped to the action bounds."""

    discrete = False

    def __init__(self, policy: Any, std: float, low: np.ndarray, high: np.ndarray) -> None:
        if not std > 0:
            raise ValueError(f"expert std must be positive, got {std}")
        self.policy = policy
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.act_dim = len(self.low)
        self.std = np.full(self.act_dim, std, dtype=np.float32)

    def act(self, frame: np.ndarray) -> np.ndarray:
        action = self.policy.get_action(np.asarray(frame, dtype=np.float64))
        return np.clip(np.asarray(action, dtype=np.float32), self.low, self.high)

    def distribution(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``, each of shape ``(act_dim,)``."""
        return self.act(frame), self.std.copy()

    def sample(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean, std = self.distribution(frame)
        return (mean + std * rng.standard_normal(self.act_dim)).astype(np.float32)


class DiscreteExpert(Expert):
    """``pi_H(k) = (1 - epsilon) [k = heuristic action] + epsilon / K``."""

    discrete = True

    def __init__(self, heuristic: Any, raw_env: Any, n_actions: int, epsilon: float) -> None:
        if not 0.0 < epsilon < 1.0:
            raise ValueError(f"expert epsilon must lie in (0, 1), got {epsilon}")
        self.heuristic, self.raw_env = heuristic, raw_env
        self.act_dim, self.epsilon = n_actions, epsilon

    def act(self, frame: np.ndarray) -> int:
        return int(self.heuristic(self.raw_env.unwrapped, np.asarray(frame, dtype=np.float64)))

    def distribution(self, frame: np.ndarray) -> np.ndarray:
        """Log-probabilities of shape ``(n_actions,)``."""
        p = np.full(self.act_dim, self.epsilon / self.act_dim)
        p[self.act(frame)] += 1.0 - self.epsilon
        return np.log(p).astype(np.float32)

    def sample(self, frame: np.ndarray, rng: np.random.Generator) -> int:
        return int(rng.choice(self.act_dim, p=np.exp(self.distribution(frame).astype(np.float64))))


def make_expert(task: str, env: SimEnv, std: float | None = None, epsilon: float | None = None) -> Expert:
    """The scripted expert for ``task``; ``std``/``epsilon`` default to the task preset's ``expert``."""
    preset = load_preset(task)["expert"]
    if task == LUNAR_LANDER:
        from gymnasium.envs.box2d.lunar_lander import heuristic

        return DiscreteExpert(heuristic, env.raw_env, env.spec.act_dim, epsilon or preset["epsilon"])
    from metaworld.policies import ENV_POLICY_MAP

    if task not in ENV_POLICY_MAP:
        raise ValueError(f"Metaworld has no scripted policy for {task!r}")
    low, high = np.array(env.spec.action_low), np.array(env.spec.action_high)
    return GaussianExpert(ENV_POLICY_MAP[task](), std or preset["std"], low, high)
