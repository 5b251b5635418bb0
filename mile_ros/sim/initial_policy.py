"""Mediocre starting policies: behaviour cloning of the scripted expert on a few demonstrations.

The recipe (task preset, ``initial_policy`` section) is deterministic given the seed: demonstrations
on fixed seeds, a seeded BC run, then a check of the policy's success rate (or return) on fixed
check seeds. If the check falls outside the preset's band, the next candidate number of
demonstrations is tried, in the preset's order, so the result stays reproducible.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mile_ros.learning import BCConfig, InterventionDataset, MileCheckpoint, PolicyRunner, fit_bc

from .envs import make_env
from .experts import make_expert
from .presets import load_preset
from .rollout import episodes_to_dataset, evaluate, run_episode, single_torch_thread

__all__ = ["DEMO_SEED_OFFSET", "InitialPolicy", "NoisyExpertActor", "demonstrations_path", "make_initial_policy"]

DEMO_SEED_OFFSET = 2_000_000  # demonstration episodes never reuse evaluation seeds
CHECK_SEED_OFFSET = 3_000_000


def demonstrations_path(policy: str | os.PathLike) -> Path:
    """Where an initial policy's demonstrations (the trainers' prior) are kept: ``<stem>-demos.npz`` beside it."""
    policy = Path(policy)
    return policy.with_name(policy.stem + "-demos.npz")


class NoisyExpertActor:
    """The expert, with Gaussian action noise (continuous) or random actions (discrete) mixed in."""

    def __init__(self, expert: Any, noise: float, seed: int) -> None:
        self.expert, self.noise = expert, noise
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, frame: np.ndarray) -> Any:
        if self.expert.discrete:
            if self.rng.random() < self.noise:
                return int(self.rng.integers(self.expert.act_dim))
            return self.expert.act(frame)
        action = self.expert.act(frame) + self.noise * self.rng.standard_normal(self.expert.act_dim)
        return np.clip(action, self.expert.low, self.expert.high).astype(np.float32)


@dataclass
class InitialPolicy:
    checkpoint: MileCheckpoint
    demos: int
    check_metric: float  # success rate, or mean return for return-judged tasks
    in_band: bool
    seconds: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The demonstrations it was cloned from (the expert's clean labels as robot actions): the D0
    # that DAgger-style learners aggregate with the interventions (``prior`` in mile_ros.baselines).
    demonstrations: InterventionDataset | None = None


def _attempt(
    task: str, recipe: dict[str, Any], demos: int, seed: int
) -> tuple[MileCheckpoint, dict[str, Any], InterventionDataset]:
    env = make_env(task, seed=seed)
    try:
        expert = make_expert(task, env)
        actor = NoisyExpertActor(expert, float(recipe["demo_noise"]), seed)
        # Labels are the expert's clean actions on the noisy trajectories, so the states cover some
        # mistakes while the policy still learns the right response.
        labelled = _Labelled(actor, expert)
        episodes = []
        for i in range(demos):
            ep = run_episode(env, labelled, DEMO_SEED_OFFSET + 1000 * seed + i)
            ep.robot_action = np.asarray(labelled.labels, dtype=ep.robot_action.dtype)
            episodes.append(ep)
    finally:
        env.close()
    data = episodes_to_dataset(episodes)
    config = BCConfig(
        hidden=tuple(recipe["hidden"]),
        lr=float(recipe["lr"]),
        epochs=int(recipe["epochs"]),
        batch_size=int(recipe["batch_size"]),
        patience=None,
        val_fraction=0.0,  # few demonstrations: train on all, the band check judges the result
        seed=seed,
    )
    policy, _ = fit_bc(data.spec, data.stacked_observations(), data.robot_action, data.episode, config=config)
    info = {
        "demos": demos,
        "demo_steps": len(data),
        "demo_success": float(np.mean([e.success for e in episodes])),
    }
    return MileCheckpoint(
        data.spec, policy, meta={"trainer": "initial_policy", "task": task, "seed": seed, **info}
    ), info, data


class _Labelled:
    """Executes the noisy actor's action but remembers the expert's clean action as the label."""

    def __init__(self, actor: NoisyExpertActor, expert: Any) -> None:
        self.actor, self.expert = actor, expert
        self.labels: list[Any] = []

    def reset(self) -> None:
        self.labels = []

    def act(self, frame: np.ndarray) -> Any:
        self.labels.append(self.expert.act(frame))
        return self.actor.act(frame)


def make_initial_policy(task: str, seed: int = 0, check_episodes: int | None = None) -> InitialPolicy:
    """The task's mediocre initial policy (see the module docstring); deterministic given ``seed``."""
    started = time.perf_counter()
    recipe = load_preset(task)["initial_policy"]
    lo, hi = recipe["band"]
    metric = recipe.get("metric", "success")
    n_check = int(check_episodes if check_episodes is not None else recipe["check_episodes"])
    attempts: list[dict[str, Any]] = []
    best: tuple[float, MileCheckpoint, dict, float, InterventionDataset] | None = None
    # Small nets: one thread is faster here, and it makes the run bit-reproducible.
    with single_torch_thread():
        for demos in recipe["demos"]:
            ckpt, info, data = _attempt(task, recipe, int(demos), seed)
            result = evaluate(task, PolicyRunner(ckpt), n_check, seed=CHECK_SEED_OFFSET + 1000 * seed)
            value = result.success_rate if metric == "success" else result.mean_return
            info.update(check=value, metric=metric, check_episodes=n_check)
            attempts.append(info)
            distance = 0.0 if lo <= value <= hi else min(abs(value - lo), abs(value - hi))
            if best is None or distance < best[0]:
                best = (distance, ckpt, info, value, data)
            if distance == 0.0:
                break
    assert best is not None, "the preset lists no demonstration counts"
    _, ckpt, info, value, data = best
    ckpt.meta.update(check=value, metric=metric, band=[lo, hi], attempts=attempts)
    return InitialPolicy(
        ckpt, info["demos"], value, lo <= value <= hi, time.perf_counter() - started, attempts, data
    )
