"""Held-out prediction of takeover starts: per-step MILE against the temporal model.

    python -m mile_ros.experiments.temporal_prediction --task drawer-open-v3 --seeds 0 1 \
        --timing holding_waiting --out runs/temporal-prediction

Per seed: the task's initial policy (seed 0, as the benchmark's), a simulated human with the given
timing (mental model fit on ``--mental-rollouts`` rollouts of the initial policy, cost calibrated),
``--train-episodes`` overseen episodes to train on and ``--test-episodes`` others (their own seeds)
to score on. Both learners start from the initial policy with the same settings (MILE's defaults,
``--epochs``) and see the same record. Scored on the held-out episodes' steps where a takeover could
start (the first step of an episode or a step after a robot step): log-likelihood per step and AUC
of "a takeover starts here", for MILE's ``P(I=1|s)``, the temporal model's ``P(I_t=1 | past)``, the
training record's constant start rate and the human's own per-step ``P(I=1|s)`` (for reference).
One JSON line per seed is appended to ``OUT/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mile_ros.experiments.metrics import prediction_scores
from mile_ros.learning import InterventionDataset, MileCheckpoint, MileConfig, load_checkpoint
from mile_ros.learning.temporal import TemporalConfig, TemporalModel, filter_sequences, takeover_starts
from mile_ros.sim import make_env, make_initial_policy
from mile_ros.sim.human import make_simulated_human
from mile_ros.sim.initial_policy import demonstrations_path
from mile_ros.sim.rollout import episodes_to_dataset, run_episode

TRAIN_SEED, TEST_SEED = 7_000_000, 8_000_000  # episode seeds, far from evaluation and mental-model seeds


def _record(env: Any, init: MileCheckpoint, human: Any, seeds: list[int]) -> tuple[InterventionDataset, np.ndarray]:
    from mile_ros.learning import PolicyRunner

    runner = PolicyRunner(init)
    episodes = [run_episode(env, runner, s, human=human) for s in seeds]
    return episodes_to_dataset(episodes), np.concatenate([ep.predicted_intervention for ep in episodes])


def run_seed(args: argparse.Namespace, seed: int, init: MileCheckpoint, prior: InterventionDataset | None) -> dict:
    from mile_ros.baselines import mile_temporal
    from mile_ros.baselines import train as train_method

    started = time.perf_counter()
    options = {"timing": args.timing, "wait_steps": args.wait_steps, "hold_mean": args.hold_mean}
    options["min_takeover_steps"] = args.min_takeover_steps
    with make_env(args.task, seed=seed) as env:
        human, _ = make_simulated_human(args.task, init, env, seed=seed, rollouts=args.mental_rollouts, **options)
        train, _ = _record(env, init, human, [TRAIN_SEED + 1000 * seed + i for i in range(args.train_episodes)])
        test, human_p = _record(env, init, human, [TEST_SEED + 1000 * seed + i for i in range(args.test_episodes)])
    record_s = time.perf_counter() - started
    mile_config = MileConfig(epochs=args.epochs, seed=seed)
    shared = {f.name: getattr(mile_config, f.name) for f in fields(MileConfig)}
    temporal_config = TemporalConfig(**shared, max_wait=args.max_wait, window=args.window)
    t0 = time.perf_counter()
    mile_ckpt = train_method("mile", train, init, mile_config, prior=prior)
    t1 = time.perf_counter()
    temporal_ckpt = mile_temporal.train(train, init, temporal_config, prior=prior)
    t2 = time.perf_counter()

    candidate, started_here = takeover_starts(test.intervention, test.episode)
    y = started_here[candidate]
    with torch.no_grad():
        obs = torch.from_numpy(test.stacked_observations())
        p_mile = mile_ckpt.intervention_model().intervention_probability(obs).numpy().astype(np.float64)
    temporal = TemporalModel.from_checkpoint(temporal_ckpt)
    p_temporal = filter_sequences(temporal, test)["p_next"]
    train_cand, train_started = takeover_starts(train.intervention, train.episode)
    rate = float(train_started.sum() / max(train_cand.sum(), 1))
    scores = {
        "mile": prediction_scores(p_mile[candidate], y),
        "temporal": prediction_scores(p_temporal[candidate], y),
        "constant": prediction_scores(np.full(int(candidate.sum()), rate), y),
        "human_per_step": prediction_scores(human_p[candidate], y),
    }
    return {
        "task": args.task,
        "seed": seed,
        "human": options,
        "human_cost": human.cost,
        "human_sigma": human.sigma,
        "train_steps": len(train),
        "train_intervened": int(train.intervention.sum()),
        "train_starts": int(train_started.sum()),
        "test_steps": len(test),
        "test_candidates": int(candidate.sum()),
        "test_starts": int(y.sum()),
        "epochs": args.epochs,
        "wait_learned": temporal.log_wait().exp().detach().numpy().round(3).tolist(),
        "scores": scores,
        "record_s": round(record_s, 1),
        "mile_s": round(t1 - t0, 1),
        "temporal_s": round(t2 - t1, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="drawer-open-v3")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--timing", default="holding_waiting", choices=("per_step", "holding", "waiting", "holding_waiting"))
    p.add_argument("--wait-steps", type=int, default=3)
    p.add_argument("--hold-mean", type=float, default=10.0)
    p.add_argument("--min-takeover-steps", type=int, default=2)
    p.add_argument("--mental-rollouts", type=int, default=20)
    p.add_argument("--train-episodes", type=int, default=4)
    p.add_argument("--test-episodes", type=int, default=4)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--max-wait", type=int, default=4)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--init", type=Path, help="initial policy (default: made for the task, seed 0); demos beside it")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.init:
        init = load_checkpoint(args.init)
        demos = demonstrations_path(args.init)
        prior = InterventionDataset.load(demos) if Path(demos).is_file() else None
    else:
        init_policy = make_initial_policy(args.task, seed=0)
        init, prior = init_policy.checkpoint, init_policy.demonstrations
    for seed in args.seeds:
        row = run_seed(args, seed, init, prior)
        with open(args.out / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        s = row["scores"]
        print(
            f"{args.task} seed {seed}: starts {row['test_starts']}/{row['test_candidates']}; "
            + "; ".join(f"{k} LL {v['log_likelihood']:.4f} AUC {v['auc']:.3f}" for k, v in s.items()),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
