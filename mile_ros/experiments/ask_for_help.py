"""Asking for help against free intervention: the human's effort and the robot's success per iteration.

    python -m mile_ros.experiments.ask_for_help --tasks drawer-open-v3 button-press-v3 peg-insert-side-v3 \
        --seeds 0 1 2 --iterations 4 --thresholds 0.3 0.5 --out runs/ask-for-help

The benchmark's iterative protocol (:mod:`mile_ros.experiments.cells`, reused, not copied): per task
and seed the cached initial policy and simulated human (``OUT/cache``, or ``--cache``: the same
files as ``mile-ros bench``), ``--episodes`` overseen episodes per iteration, MILE (``--method``)
trained on the whole record from the initial policy after each iteration, evaluated policy-alone
on the fixed evaluation seeds, and the human's belief refit on those evaluation episodes.

Iteration 1 is shared: the initial policy has no intervention model to ask with, so its round is
collected with free intervention once and every condition continues from it. From iteration 2 on:

- ``free``: no asking; the human steps in on their own (the benchmark's human);
- ``ask``: the robot asks when its ``P(I=1|s)`` is above the threshold
  (:mod:`mile_ros.graph.asking`); the human still watches and steps in on their own too;
- ``ask_only``: the robot asks; the human steps in only when asked.

A request holds the robot; the human answers at the next step with a takeover of
``--answer-steps`` steps driven as the expert does (:class:`mile_ros.sim.SimulatedHuman`). The
human's effort: intervened steps and takeovers (runs of intervened steps), per iteration and
cumulative. One JSON line per task, seed, condition, threshold and iteration is appended to
``OUT/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mile_ros.graph.asking import AskConfig
from mile_ros.learning import InterventionDataset, MileCheckpoint, PolicyNet, PolicyRunner
from mile_ros.seeds import EVAL_SEED, collect_seed
from mile_ros.sim import evaluate, make_env
from mile_ros.sim.human import SimulatedHuman, fit_belief
from mile_ros.sim.rollout import Episode, run_episode

from .cells import Cell, train_for_cell
from .presets import get_preset
from .tasks import HumanSetup, TaskSetup, build_human, prepare_human, prepare_task

__all__ = ["CONDITIONS", "run_task_seed"]

CONDITIONS = ("free", "ask", "ask_only")
EXPERIMENT = "ask_for_help"


@dataclass
class Round:
    """What one iteration left: the record so far, the trained policy, the human's belief, the row."""

    data: InterventionDataset
    policy: MileCheckpoint
    belief: PolicyNet | None
    row: dict[str, Any]


def _effort(episodes: list[Episode], human: SimulatedHuman) -> dict[str, int]:
    return {
        "steps": sum(ep.length for ep in episodes),
        "intervened_steps": sum(ep.intervention_count for ep in episodes),
        "takeovers": sum(ep.takeovers for ep in episodes),
        "help_requests": sum(ep.help_requests for ep in episodes),
        "requests_answered": sum(ep.requests_answered for ep in episodes),
        "requests_timed_out": sum(ep.requests_timed_out for ep in episodes),
        "held_steps": sum(ep.held_steps for ep in episodes),
    }


def _iteration(
    args: argparse.Namespace,
    cell: Cell,
    env: Any,
    human: SimulatedHuman,
    setup: TaskSetup,
    previous: InterventionDataset | None,
    policy: MileCheckpoint,
    it: int,
    ask: AskConfig | None,
) -> Round:
    preset = get_preset(args.preset)
    t0 = time.perf_counter()
    runner = PolicyRunner(policy)
    seeds = [collect_seed(cell.seed, cell.episodes, it - 1, k) for k in range(cell.episodes)]
    answers_before = human.answered_steps
    episodes = [run_episode(env, runner, s, human=human, ask=ask) for s in seeds]
    first_id = cell.episodes * (it - 1)
    new = InterventionDataset.concatenate([ep.to_dataset(first_id + i) for i, ep in enumerate(episodes)])
    data = new if previous is None else InterventionDataset.concatenate([previous, new])
    predicted = _robot_prediction(policy, new)
    t1 = time.perf_counter()
    trained = train_for_cell(cell.method, data, setup.init, cell, preset, it, None, setup.prior)
    t2 = time.perf_counter()
    tracking = it < cell.iterations
    result = evaluate(cell.task, trained, preset.eval_episodes, seed=EVAL_SEED, workers=1, keep_episodes=tracking)
    belief = fit_belief(cell.task, result.extra["episodes"], trained, cell.seed).net if tracking else None
    t3 = time.perf_counter()
    row = {
        "iteration": it,
        **_effort(episodes, human),
        "answered_steps": human.answered_steps - answers_before,
        **predicted,
        "record_steps": len(data),
        "success_rate": result.success_rate,
        "success_se": result.success_se,
        "mean_return": result.mean_return,
        "sim_s": round(t1 - t0, 1),
        "train_s": round(t2 - t1, 1),
        "eval_s": round(t3 - t2, 1),
    }
    return Round(data, trained, belief, row)


@torch.no_grad()
def _robot_prediction(policy: MileCheckpoint, new: InterventionDataset) -> dict[str, float]:
    """The collecting policy's own ``P(I=1|s)`` on the recorded steps (what asking compares with the
    threshold): mean and largest; NaN for a policy without an intervention model."""
    model = policy.intervention_model()
    if model is None or not len(new):
        return {"robot_p_mean": math.nan, "robot_p_max": math.nan}
    p = model.intervention_probability(torch.from_numpy(new.stacked_observations(policy.padding))).numpy()
    return {"robot_p_mean": float(p.mean()), "robot_p_max": float(p.max())}


def _human(args: argparse.Namespace, setup: HumanSetup, env: Any, seed: int, condition: str) -> SimulatedHuman:
    human = build_human(setup, env, seed)
    human.answer_steps = int(args.answer_steps)
    human.free_intervention = condition != "ask_only"
    return human


def run_task_seed(args: argparse.Namespace, task: str, seed: int) -> list[dict[str, Any]]:
    """Every condition on one task and seed; returns the rows (also appended to the results)."""
    preset = get_preset(args.preset)
    cache = Path(args.cache or args.out / "cache")
    setup = prepare_task(task, preset, cache)
    human_setup = prepare_human(task, seed, preset, cache, {})
    cell = Cell(EXPERIMENT, task, args.method, seed, args.iterations, args.episodes)
    base = {
        "task": task,
        "seed": seed,
        "method": args.method,
        "preset": args.preset,
        "episodes_per_iteration": args.episodes,
        "answer_steps": args.answer_steps,
        "timeout_steps": args.timeout_steps,
        "cooldown_steps": args.cooldown_steps,
        "init_success": setup.init_success,
        "expert_success": setup.expert_success,
        "human_cost": human_setup.cost,
        "human_sigma": human_setup.sigma,
    }
    plans = [("free", None)] if "free" in args.conditions else []
    plans += [(c, t) for c in args.conditions if c != "free" for t in args.thresholds]
    rows: list[dict[str, Any]] = []
    with make_env(task, seed=seed) as env:
        started = time.perf_counter()
        free_human = _human(args, human_setup, env, seed, "free")
        first = _iteration(args, cell, env, free_human, setup, None, setup.init, 1, None)
        shared_s = time.perf_counter() - started
        for condition, threshold in plans:
            started = time.perf_counter()
            ask = None if threshold is None else AskConfig(threshold, args.timeout_steps, args.cooldown_steps)
            human = _human(args, human_setup, env, seed, condition)
            state, out = first, [first.row]
            for it in range(2, args.iterations + 1):
                if state.belief is not None:
                    human.set_mental(state.belief)
                state = _iteration(args, cell, env, human, setup, state.data, state.policy, it, ask)
                out.append(state.row)
            totals = {"intervened_total": 0, "takeovers_total": 0}
            for row in out:
                totals["intervened_total"] += row["intervened_steps"]
                totals["takeovers_total"] += row["takeovers"]
                full = {**base, "condition": condition, "threshold": threshold, **row, **totals}
                full["condition_s"] = round(time.perf_counter() - started + shared_s, 1)
                rows.append(full)
            _append(args.out, rows[-len(out) :])
            last = rows[-1]
            print(
                f"{task} seed {seed} {condition}{'' if threshold is None else f'@{threshold:g}'}: "
                f"success {last['success_rate']:.2f} after {last['iteration']} it., "
                f"{last['intervened_total']} intervened steps in {last['takeovers_total']} takeovers "
                f"[{last['condition_s']:.0f} s]",
                flush=True,
            )
    return rows


def _append(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a threshold is a probability in (0, 1), got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["drawer-open-v3"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--iterations", type=int, default=4, help="iterations (1 episode each by default); at least 2")
    p.add_argument("--episodes", type=int, default=1, help="overseen episodes per iteration")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    p.add_argument("--thresholds", type=_probability, nargs="+", default=[0.5], help="ask when P(I=1|s) is above")
    p.add_argument("--timeout-steps", type=int, default=20, help="held steps before an unanswered request ends")
    p.add_argument("--cooldown-steps", type=int, default=10, help="robot steps after a request before the next")
    p.add_argument("--answer-steps", type=int, default=10, help="steps the human drives when answering a request")
    p.add_argument("--method", default="mile", help="mile or mile@options (e.g. mile@epochs=20)")
    p.add_argument("--preset", default="quick", choices=("paper", "quick", "smoke"))
    p.add_argument("--cache", type=Path, help="initial policies and humans (default OUT/cache; a benchmark's works)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.iterations < 2:
        p.error("--iterations must be at least 2 (iteration 1 is the shared free round)")
    if args.episodes < 1:
        p.error("--episodes must be at least 1")
    try:
        AskConfig(args.thresholds[0], args.timeout_steps, args.cooldown_steps)
        if args.answer_steps < 1:
            raise ValueError(f"--answer-steps must be at least 1, got {args.answer_steps}")
    except ValueError as exc:
        p.error(str(exc))
    torch.set_num_threads(1)
    for task in args.tasks:
        for seed in args.seeds:
            run_task_seed(args, task, seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
