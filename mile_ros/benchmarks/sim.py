"""``mile-ros bench sim``: the simulation layer's figures: expert and initial-policy success, rollout and
render speed, the simulated human's intervention rate.

    mile-ros bench sim --tasks drawer-open-v3 LunarLander-v3 --episodes 20

prints one markdown table row per task (and the timings behind it) so that the numbers quoted in
the docs can be reproduced. Nothing here asserts a speed; it measures and prints.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mile_ros.sim import Expert

DEFAULT_TASKS = ("drawer-open-v3", "peg-insert-side-v3", "button-press-v3", "LunarLander-v3")


class _ExpertActor:
    """The expert's own action, or a draw from pi_H when ``sample``."""

    def __init__(self, expert: Expert, sample: bool, seed: int = 0) -> None:
        self.expert, self.sample = expert, sample
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, frame: np.ndarray) -> Any:
        return self.expert.sample(frame, self.rng) if self.sample else self.expert.act(frame)


def _render_fps(task: str, frames: int = 30) -> float:
    from mile_ros.sim import make_env

    with make_env(task, render=True, image_size=224) as env:
        env.reset(seed=0)
        env.render()  # first frame creates the GL context
        started = time.perf_counter()
        for _ in range(frames):
            env.render()
        return frames / (time.perf_counter() - started)


def bench_task(task: str, episodes: int, mental_rollouts: int, human_episodes: int) -> dict[str, Any]:
    """Measure one task; returns a flat dict of figures."""
    from mile_ros.learning import PolicyRunner
    from mile_ros.sim import evaluate, make_env, make_expert, make_initial_policy, make_simulated_human, run_episode

    out: dict[str, Any] = {"task": task}
    with make_env(task) as env:
        expert = make_expert(task, env)
        for name, sample in (("expert", False), ("expert_pi_h", True)):
            r = evaluate(task, _ExpertActor(expert, sample), episodes, seed=0)
            out[f"{name}_success"], out[f"{name}_return"] = r.success_rate, r.mean_return
            out[f"{name}_steps_per_s"] = r.steps_per_second
        init = make_initial_policy(task, seed=0)
        out.update(init_seconds=init.seconds, init_demos=init.demos, init_check=init.check_metric)
        for workers in (1, 2):
            r = evaluate(task, init.checkpoint, episodes, seed=0, workers=workers)
            out[f"eval_w{workers}_seconds"] = r.wall_time
            if workers == 1:
                out["policy_steps_per_s"] = r.steps_per_second
            out["init_success"], out["init_return"] = r.success_rate, r.mean_return
            out["init_success_se"], out["init_return_se"] = r.success_se, r.return_se
        if human_episodes > 0:
            human, fit = make_simulated_human(task, init.checkpoint, env, seed=0, rollouts=mental_rollouts)
            out.update(mental_seconds=fit.seconds, human_cost=human.cost, human_sigma=human.sigma)
            runner = PolicyRunner(init.checkpoint)
            eps = [run_episode(env, runner, 10_000 + i, human=human) for i in range(human_episodes)]
            steps = sum(e.length for e in eps)
            out["human_intervention_rate"] = sum(e.intervention_count for e in eps) / steps
            out["human_predicted_rate"] = float(np.mean(np.concatenate([e.predicted_intervention for e in eps])))
            out["human_success"] = float(np.mean([e.success for e in eps]))
            out["human_steps_per_s"] = steps / sum(e.wall_time for e in eps)
    out["render_fps_224"] = _render_fps(task)
    return out


def _row(r: dict[str, Any]) -> str:
    def f(key: str, fmt: str = ".2f") -> str:
        v = r.get(key)
        return "-" if v is None else format(v, fmt)

    return (
        f"| {r['task']} | {f('expert_success')} / {f('expert_return', '.0f')} "
        f"| {f('expert_pi_h_success')} / {f('expert_pi_h_return', '.0f')} "
        f"| {f('init_success')} ± {f('init_success_se')} / {f('init_return', '.0f')} | {f('init_seconds', '.1f')} "
        f"| {f('human_intervention_rate')} ({f('human_predicted_rate')}) / {f('human_success')} "
        f"| {f('expert_steps_per_s', '.0f')} / {f('policy_steps_per_s', '.0f')} / {f('human_steps_per_s', '.0f')} "
        f"| {f('eval_w1_seconds', '.1f')} / {f('eval_w2_seconds', '.1f')} | {f('render_fps_224', '.0f')} |"
    )


HEADER = (
    "| task | expert success / return | pi_H draws success / return | initial policy success / return "
    "| init s | human rate (predicted) / success | steps/s expert / policy / with human "
    "| eval s 1 / 2 workers | render fps |\n|" + "---|" * 9
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes (seeds 0..N-1)")
    parser.add_argument("--mental-rollouts", type=int, default=100)
    parser.add_argument("--human-episodes", type=int, default=10, help="0 skips the simulated human")
    parser.add_argument("--json", help="also write the figures to this file")


def run(args: argparse.Namespace) -> int:
    """One JSON line per task as it is measured, then the markdown table of them all."""
    rows = []
    for task in args.tasks:
        r = bench_task(task, args.episodes, args.mental_rollouts, args.human_episodes)
        print(json.dumps(r), flush=True)
        rows.append(r)
    print(HEADER)
    for r in rows:
        print(_row(r))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0
