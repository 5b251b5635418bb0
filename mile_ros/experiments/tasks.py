"""Everything an experiment cell needs about a task, made once and cached on disk.

Per task: the initial policy (the sim recipe, seed 0, shared by every method and seed) and the
expert's and initial policy's evaluation. Per task and seed: the simulated human, i.e. a mental
model behaviour-cloned from the initial policy's rollouts and the calibrated intervention cost.
Files are written atomically, so a cache survives an interrupted run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mile_ros.learning import InterventionDataset, MileCheckpoint, load_checkpoint
from mile_ros.seeds import EVAL_SEED
from mile_ros.sim import SimulatedHuman, evaluate, make_env, make_expert, make_initial_policy
from mile_ros.sim.human import ACTION_MODES, check_human_settings, make_simulated_human
from mile_ros.sim.initial_policy import demonstrations_path
from mile_ros.sim.rollout import episodes_to_dataset, run_episode

from .presets import ExperimentPreset

__all__ = [
    "HUMAN_OPTIONS",
    "ExpertActor",
    "HumanSetup",
    "TaskSetup",
    "build_human",
    "check_human_options",
    "expert_demos",
    "prepare_human",
    "prepare_task",
]

DEMO_SEED = 5_000_000  # expert demonstrations for the ablation
# What the benchmark may change about the task presets' simulated human (``--human``).
HUMAN_OPTIONS = ("sigma", "min_takeover_steps", "action_mode", "timing", "hold_mean", "wait_steps")


def check_human_options(options: dict[str, Any]) -> None:
    """Raise ValueError for an unknown option or a value the simulated human would refuse."""
    unknown = sorted(set(options) - set(HUMAN_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown simulated-human option(s) {', '.join(unknown)}; choose from {', '.join(HUMAN_OPTIONS)}"
        )
    check_human_settings(
        options.get("sigma", 1.0),
        options.get("min_takeover_steps", 1),
        options.get("action_mode", ACTION_MODES[0]),
        options.get("timing", "per_step"),
        options.get("hold_mean", max(10.0, options.get("min_takeover_steps", 1))),
        options.get("wait_steps", 3),
    )


class ExpertActor:
    """The scripted expert as an actor (its most likely action)."""

    def __init__(self, expert: Any) -> None:
        self.expert = expert

    def reset(self) -> None:
        pass

    def act(self, frame: np.ndarray) -> Any:
        return self.expert.act(frame)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


@dataclass
class TaskSetup:
    task: str
    init_path: str
    init_success: float
    init_return: float
    expert_success: float
    expert_return: float
    init_demos: int
    seconds: float
    prior_path: str = ""  # the demonstrations the initial policy was cloned from (D0)

    @property
    def init(self) -> MileCheckpoint:
        return load_checkpoint(self.init_path)

    @property
    def prior(self) -> InterventionDataset:
        return InterventionDataset.load(self.prior_path)


@dataclass
class HumanSetup:
    task: str
    seed: int
    mental_path: str
    cost: float
    sigma: float
    rollouts: int
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)  # the benchmark's overrides of the preset's human
    mental_heldout_mse: float = float("nan")  # the belief's error on rollouts it was not fit on
    mental_heldout_nll: float = float("nan")


def prepare_task(task: str, preset: ExperimentPreset, cache: Path) -> TaskSetup:
    """The task's initial policy and its and the expert's evaluation (from the cache when there)."""
    folder = Path(cache) / task
    info_path = folder / f"task-{preset.name}.json"
    if info_path.is_file():
        cached = json.loads(info_path.read_text())
        if cached.get("prior_path"):
            return TaskSetup(**cached)
        # A cache from before the prior was kept: made again, so every method gets its D0.
    started = time.perf_counter()
    init = make_initial_policy(task, seed=0, check_episodes=preset.init_check_episodes)
    init_path = init.checkpoint.save(folder / "init.pt")
    assert init.demonstrations is not None, "the initial-policy recipe returns its demonstrations"
    prior_path = init.demonstrations.save(demonstrations_path(init_path))
    init_eval = evaluate(task, init.checkpoint, preset.eval_episodes, seed=EVAL_SEED, workers=1)
    env = make_env(task, seed=0)
    try:
        expert_eval = evaluate(task, ExpertActor(make_expert(task, env)), preset.eval_episodes, seed=EVAL_SEED)
    finally:
        env.close()
    setup = TaskSetup(
        task,
        str(init_path),
        init_eval.success_rate,
        init_eval.mean_return,
        expert_eval.success_rate,
        expert_eval.mean_return,
        init.demos,
        time.perf_counter() - started,
        str(prior_path),
    )
    _write_json(info_path, asdict(setup))
    return setup


def prepare_human(
    task: str, seed: int, preset: ExperimentPreset, cache: Path, options: dict[str, Any] | None = None
) -> HumanSetup:
    """The seed's simulated human: mental model of the initial policy and calibrated cost.

    ``options`` (:data:`HUMAN_OPTIONS`) replace the task preset's settings of the human (the cost
    is calibrated for them); such a human is cached under its own name, beside the preset's.
    """
    options = dict(sorted((options or {}).items()))
    check_human_options(options)
    folder = Path(cache) / task
    name = preset.name + "".join(f"-{k}{v:g}" if isinstance(v, float) else f"-{k}{v}" for k, v in options.items())
    info_path = folder / f"human-{name}-s{seed}.json"
    if info_path.is_file():
        return HumanSetup(**json.loads(info_path.read_text()))
    started = time.perf_counter()
    init = load_checkpoint(folder / "init.pt")
    env = make_env(task, seed=seed)
    try:
        human, fit = make_simulated_human(task, init, env, seed=seed, rollouts=preset.mental_rollouts, **options)
    finally:
        env.close()
    mental_path = MileCheckpoint(init.spec, fit.net, meta={"role": "simulated human's mental model"}).save(
        folder / f"mental-{name}-s{seed}.pt"
    )
    setup = HumanSetup(
        task,
        seed,
        str(mental_path),
        human.cost,
        human.sigma,
        fit.rollouts,
        time.perf_counter() - started,
        options,
        fit.heldout_mse,
        fit.heldout_nll,
    )
    _write_json(info_path, asdict(setup))
    return setup


def build_human(setup: HumanSetup, env: Any, seed: int) -> SimulatedHuman:
    """The cached human, ready to oversee episodes in ``env``."""
    mental = load_checkpoint(setup.mental_path).policy
    options = {**setup.options, "cost": setup.cost, "sigma": setup.sigma}
    return SimulatedHuman.from_preset(setup.task, env, mental, seed=seed, **options)


def expert_demos(task: str, count: int, env: Any) -> InterventionDataset | None:
    """``count`` expert rollouts (the scripted expert's actions stored as robot actions)."""
    if count <= 0:
        return None
    actor = ExpertActor(make_expert(task, env))
    episodes = [run_episode(env, actor, DEMO_SEED + i) for i in range(count)]
    return episodes_to_dataset(episodes)
