"""One cell of an experiment: a task x method x seed, from the cached setup to a list of CSV rows.

The iterative loop (the paper's Fig. 4) is the core: each iteration the method's current policy
runs ``episodes`` episodes under the simulated human, the record grows, the method is trained on
all of it (from the initial policy, or continuing from its previous one: ``train_from``) and the
new policy is evaluated. The single-iteration experiment (Fig. 3) is one iteration: every method
then sees the same data, because the first round is collected by the common initial policy on the
same seeds with the same human. The demonstration ablation (Fig. 5) is the same loop with expert
demonstrations given to the baselines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mile_ros import baselines
from mile_ros.baselines.bc_intervention import intervention_probability as classifier_probability
from mile_ros.learning import (
    InterventionDataset,
    MileCheckpoint,
    PolicyNet,
    PolicyRunner,
    RolloutSelection,
    Spec,
    TrainingDivergedError,
)
from mile_ros.seeds import EVAL_SEED, SELECT_SEED, collect_seed, update_seed
from mile_ros.sim import evaluate, fit_mental_model, make_env
from mile_ros.sim.human import fit_belief
from mile_ros.sim.rollout import Episode, run_episode

from .metrics import prediction_scores
from .presets import ExperimentPreset, parse_method
from .report import metric_for
from .tasks import HumanSetup, TaskSetup, build_human, expert_demos

__all__ = ["Cell", "cell_config", "record_path", "run_cell", "train_for_cell"]


@dataclass(frozen=True)
class Cell:
    experiment: str
    task: str
    method: str  # a method name, optionally with overrides: "mile@continuous_form=authors"
    seed: int
    iterations: int
    episodes: int
    demos: int = 0
    refit_mental: bool = False
    # The human's belief about the robot: "tracking" refits it after every evaluation on the
    # evaluation episodes of the robot's new policy (a person who watched them; the paper's
    # simulated human models the robot's current policy), "frozen" keeps the initial policy's
    # (the authors' code). ``refit_mental`` refits it from fresh rollouts before each iteration.
    belief: str = "tracking"
    # "initial": each iteration trains a fresh clone of the initial policy on the whole record;
    # "previous": it continues from the method's last policy (the authors' schedule). Why the
    # default: docs/results.md.
    train_from: str = "initial"
    # The authors' model selection (docs/mile-model.md): every ``select_every`` epochs the policy is
    # rolled out on ``select_rollouts`` episodes of their own seeds and the best one is kept
    # (0: off, the default; a real robot has no rollouts to spare).
    select_rollouts: int = 0
    select_every: int = 50

    @property
    def key(self) -> tuple:
        return (self.experiment, self.task, self.method, str(self.seed), str(self.demos))


def record_path(records: Path, cell: Cell) -> Path:
    """Where a cell keeps its intervention record (``mile-ros replay`` retrains on it)."""
    demos = f"-d{cell.demos}" if cell.demos else ""
    return Path(records) / cell.task / f"{cell.experiment}-{cell.method}-s{cell.seed}{demos}.npz"


def _collect(env, policy: MileCheckpoint, human, cell: Cell, iteration: int) -> list[Episode]:
    runner = PolicyRunner(policy)
    seeds = [collect_seed(cell.seed, cell.episodes, iteration - 1, k) for k in range(cell.episodes)]
    return [run_episode(env, runner, s, human=human) for s in seeds]


def _as_dataset(episodes: list[Episode], first_id: int) -> InterventionDataset:
    return InterventionDataset.concatenate([ep.to_dataset(first_id + i) for i, ep in enumerate(episodes)])


def cell_config(method: str, task: str, iterations: int, preset, seed: int | None = None) -> Any:
    """The settings ``method`` (``"name@options"``) trains with in a cell of ``iterations``
    iterations on ``task``: ``baselines.resolve_config`` with the experiment preset's values under
    the method's options, and ``seed`` (an update's) on top."""
    name, options = parse_method(method)
    settings = {} if seed is None else {"seed": seed}
    return baselines.resolve_config(name, options, task, iterations > 1, preset.overrides(name), settings)


def train_for_cell(
    method: str,
    data: InterventionDataset,
    current: MileCheckpoint,
    cell: Cell,
    preset,
    it: int,
    demos,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
) -> MileCheckpoint:
    """Train ``method`` as ``cell`` does at iteration ``it``: its preset, variant, overrides and update
    seed (:func:`cell_config`); demonstrations only where the method gets them; ``selection`` chooses
    the weights by rollouts."""
    name = parse_method(method)[0]
    config = cell_config(method, cell.task, cell.iterations, preset, update_seed(cell.seed, it))
    demos = demos if baselines.gets_demos(name) else None
    trained = baselines.train(name, data, current, config, demos=demos, prior=prior, selection=selection)
    bad = [k for k, v in trained.policy.state_dict().items() if not torch.isfinite(v).all()]
    if bad:
        raise TrainingDivergedError(
            f"{method} returned non-finite weights ({', '.join(bad[:3])}...) at iteration {it}, "
            f"trained on {len(data)} steps ({int(data.intervention.sum())} intervened)"
        )
    return trained


class _RolloutScorer:
    """Scores a candidate policy of a cell by rollouts on the selection episodes; adds up the time."""

    def __init__(self, cell: Cell, spec: Spec) -> None:
        self.cell, self.spec, self.seconds = cell, spec, 0.0
        self.best = -math.inf  # the kept candidate's score: what a protocol reporting it would report

    def __call__(self, modules: Sequence[torch.nn.Module]) -> float:
        started = time.perf_counter()
        policy = next(m if isinstance(m, PolicyNet) else m.policy for m in modules)  # MileModel: its .policy
        result = evaluate(self.cell.task, MileCheckpoint(self.spec, policy), self.cell.select_rollouts, SELECT_SEED, 1)
        self.seconds += time.perf_counter() - started
        score = float(getattr(result, metric_for(self.cell.task)))
        self.best = max(self.best, score)
        return score


def run_cell(
    cell: Cell, task: TaskSetup, human_setup: HumanSetup, preset: ExperimentPreset, records: Path | None = None
) -> list[dict[str, Any]]:
    """Run one cell; returns its rows (one per iteration, or per predictor and iteration).

    With ``records``, the cell's whole record is written there after every iteration
    (:func:`record_path`; episode ``k`` of iteration ``i`` has id ``episodes * (i - 1) + k``).

    A cell that fails (e.g. a method whose training diverges) keeps the rows it finished and ends
    with a row whose ``error`` says what happened, so one bad cell does not stop a long run and
    the failure shows in the CSV and the summary.
    """
    torch.set_num_threads(1)  # one core per cell: the process pool supplies the parallelism
    rows: list[dict[str, Any]] = []
    try:
        if cell.experiment == "prediction":
            _run_prediction(cell, task, human_setup, preset, rows, records)
        else:
            _run_iterative(cell, task, human_setup, preset, rows, records)
    except Exception as exc:
        last = rows[-1]["iteration"] if rows else 0
        error = f"{type(exc).__name__}: {exc}"
        rows.append({**_base_row(cell, task, human_setup), "iteration": last + 1, "error": error})
    return rows


def _base_row(cell: Cell, task: TaskSetup, human_setup: HumanSetup) -> dict[str, Any]:
    return {
        "experiment": cell.experiment,
        "task": cell.task,
        "method": cell.method,
        "seed": cell.seed,
        "demos": cell.demos,
        "episodes_per_iteration": cell.episodes,
        "train_from": cell.train_from,
        "refit_mental": cell.refit_mental,
        "belief": cell.belief,
        "select_rollouts": cell.select_rollouts,
        "expert_success": task.expert_success,
        "expert_return": task.expert_return,
        "human_cost": human_setup.cost,
        "human_sigma": human_setup.sigma,
        "human_options": ",".join(f"{k}={v}" for k, v in human_setup.options.items()),
        "error": "",
    }


def _run_iterative(cell: Cell, task: TaskSetup, human_setup: HumanSetup, preset, rows: list, records) -> None:
    started = time.perf_counter()
    env = make_env(cell.task, seed=cell.seed)
    rows.append(
        {
            **_base_row(cell, task, human_setup),
            "iteration": 0,
            "steps_total": 0,
            "intervened_steps": 0,
            "intervention_rate": float("nan"),
            "success_rate": task.init_success,
            "success_se": float("nan"),
            "mean_return": task.init_return,
            "sim_s": 0.0,
            "train_s": 0.0,
            "eval_s": 0.0,
            "cell_s": 0.0,
            "selected_epoch": "",
            "select_s": 0.0,
            "select_score": float("nan"),
            "human_auc": float("nan"),
            "human_nats": float("nan"),
        }
    )
    try:
        human = build_human(human_setup, env, cell.seed)
        t = time.perf_counter()
        demos = expert_demos(cell.task, cell.demos, env)
        demo_s = time.perf_counter() - t
        init = current = task.init  # loaded once: every method trains a clone, never init itself
        prior = task.prior
        parts: list[InterventionDataset] = []
        predicted: list[np.ndarray] = []
        intervened = 0
        for it in range(1, cell.iterations + 1):
            t0 = time.perf_counter()
            if cell.refit_mental and it > 1:
                human.set_mental(fit_mental_model(cell.task, current, rollouts=preset.mental_rollouts, seed=cell.seed))
            episodes = _collect(env, current, human, cell, it)
            parts.append(_as_dataset(episodes, cell.episodes * (it - 1)))
            data = InterventionDataset.concatenate(parts)
            if records is not None:
                data.save(record_path(records, cell))
            new_int = sum(ep.intervention_count for ep in episodes)
            intervened += new_int
            predicted += [ep.predicted_intervention for ep in episodes]
            timing = human_timing(np.concatenate(predicted), data.intervention)
            t1 = time.perf_counter()
            start = init if cell.train_from == "initial" else current
            scorer = _RolloutScorer(cell, init.spec)
            selection = RolloutSelection(scorer, cell.select_every) if cell.select_rollouts else None
            current = train_for_cell(cell.method, data, start, cell, preset, it, demos, prior, selection)
            t2 = time.perf_counter()
            tracking = cell.belief == "tracking" and it < cell.iterations
            result = evaluate(
                cell.task, current, preset.eval_episodes, seed=EVAL_SEED, workers=1, keep_episodes=tracking
            )
            if tracking:
                human.set_mental(fit_belief(cell.task, result.extra["episodes"], current, cell.seed))
            t3 = time.perf_counter()
            rows.append(
                {
                    **_base_row(cell, task, human_setup),
                    "iteration": it,
                    "steps_total": len(data),
                    "intervened_steps": intervened,
                    "intervention_rate": new_int / max(sum(ep.length for ep in episodes), 1),
                    "success_rate": result.success_rate,
                    "success_se": result.success_se,
                    "mean_return": result.mean_return,
                    "sim_s": t1 - t0 + (demo_s if it == 1 else 0.0),
                    "train_s": t2 - t1,
                    "eval_s": t3 - t2,
                    "cell_s": time.perf_counter() - started,
                    "selected_epoch": current.meta.get("best_epoch", "") if cell.select_rollouts else "",
                    "select_s": scorer.seconds,  # part of train_s
                    "select_score": scorer.best if cell.select_rollouts else float("nan"),
                    **timing,
                }
            )
    finally:
        env.close()


def human_timing(predicted: np.ndarray, intervened: np.ndarray) -> dict[str, float]:
    """How informative the simulated human's timing is on its own record: the AUC of its own
    ``P(I=1|s)`` and its log-likelihood per step minus that of the record's constant rate (nats)."""
    rate = float(np.mean(intervened))
    if not 0.0 < rate < 1.0 or not np.isfinite(predicted).all():
        return {"human_auc": float("nan"), "human_nats": float("nan")}
    scores = prediction_scores(predicted, intervened)
    constant = rate * math.log(rate) + (1.0 - rate) * math.log1p(-rate)
    return {"human_auc": scores["auc"], "human_nats": scores["log_likelihood"] - constant}


def _run_prediction(cell: Cell, task: TaskSetup, human_setup: HumanSetup, preset, rows: list, records) -> None:
    """MILE trained iteratively; before training on iteration k, every predictor (fit on iterations
    before k) scores iteration k's interventions. The simulated human's own P(I=1|s) is the ceiling.
    """
    started = time.perf_counter()
    env = make_env(cell.task, seed=cell.seed)
    try:
        human = build_human(human_setup, env, cell.seed)
        init = current = task.init  # loaded once: every method trains a clone, never init itself
        prior = task.prior
        parts: list[InterventionDataset] = []
        for it in range(1, cell.iterations + 1):
            t0 = time.perf_counter()
            episodes = _collect(env, current, human, cell, it)
            new = _as_dataset(episodes, cell.episodes * (it - 1))
            t1 = time.perf_counter()
            if parts:
                past = InterventionDataset.concatenate(parts)
                obs = new.stacked_observations()
                model = current.intervention_model()
                nn_ckpt = train_for_cell("bc_intervention", past, init, cell, preset, it, None, prior)
                predictors = {
                    "mile": model.intervention_probability(torch.from_numpy(obs)).numpy(),
                    "nn_classifier": classifier_probability(nn_ckpt, obs),
                    "majority": np.full(len(new), past.intervention_rate),
                    "simulated_human": np.concatenate([ep.predicted_intervention for ep in episodes]),
                }
                for name, p in predictors.items():
                    rows.append(
                        {
                            **_base_row(cell, task, human_setup),
                            "predictor": name,
                            "iteration": it,
                            "train_steps": len(past),
                            **prediction_scores(p, new.intervention),
                            "sim_s": t1 - t0,
                            "cell_s": time.perf_counter() - started,
                        }
                    )
            parts.append(new)
            data = InterventionDataset.concatenate(parts)
            if records is not None:
                data.save(record_path(records, cell))
            start = init if cell.train_from == "initial" else current
            current = train_for_cell(cell.method, data, start, cell, preset, it, None, prior)
    finally:
        env.close()
