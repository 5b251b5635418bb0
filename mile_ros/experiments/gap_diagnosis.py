"""Where MILE's learned ``P(I=1|s)`` loses the human's timing on fresh states.

    python -m mile_ros.experiments.gap_diagnosis --task drawer-open-v3 --seeds 0 1 2 --out runs/gap

Per seed: the task's initial policy (seed 0, as the benchmark's), the benchmark's per-step simulated
human (belief fit on the initial policy's rollouts, cost calibrated), ``--train-episodes`` overseen
episodes of the initial policy to train MILE on (the task's single-round MILE settings) and
``--test-episodes`` others, on their own seeds, to score on.

For continuous actions ``P(I=1|s)`` rises with one number per state, the spread
``D(s) = sum_i (S_i^2 + (m_i - mu_i)^2) / sigma_i^2`` of the belief ``N(m, S^2)`` under the acting
policy ``N(mu, sigma^2)``, whatever ``c`` and the probit scale are: the AUC of any such model is the
AUC of its ``D``. So the learned model is scored with each of its two halves swapped for the
human's own: the policy half (``mu, sigma``: learned, the learned mean with the expert's std, or
the human's expert) and the belief half
(``m, S``: the learned mental model, or the human's belief), on the training record (in sample)
and on the held-out episodes. Log-likelihoods per step are given over the training record's
constant rate, with the learned ``c`` and scale (``learned``) and, for every pair, with ``c`` and the
scale refit to the training record by maximum likelihood (``*_fit``: how well that ``D`` can be
calibrated at best). Also: the learned policy's mean error to the expert's mean on the training
record's intervened and robot steps and on the held-out steps. One JSON line per seed is appended
to ``OUT/results.jsonl``; the trained checkpoint and both records are kept beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mile_ros.experiments.metrics import auc, prediction_scores
from mile_ros.learning import InterventionDataset, MileCheckpoint, PolicyRunner, load_checkpoint
from mile_ros.learning.intervention import chi2_probit_expectation, gaussian_spread
from mile_ros.sim import make_env, make_initial_policy
from mile_ros.sim.human import SimulatedHuman, make_simulated_human
from mile_ros.sim.initial_policy import demonstrations_path
from mile_ros.sim.rollout import episodes_to_dataset, run_episode

TRAIN_SEED, TEST_SEED = 7_000_000, 8_000_000  # episode seeds, far from evaluation and mental-model seeds
# Where each half of the model comes from; "learned_mean": the learned policy's mean with the
# expert's std (is the learned std what spoils the ranking, or the mean?).
POLICIES = ("learned", "learned_mean", "human")
BELIEFS = ("learned", "human")


def _record(env: Any, init: MileCheckpoint, human: SimulatedHuman, seeds: list[int]) -> InterventionDataset:
    runner = PolicyRunner(init)
    return episodes_to_dataset([run_episode(env, runner, s, human=human) for s in seeds])


@torch.no_grad()
def _halves(ckpt: MileCheckpoint, human: SimulatedHuman, data: InterventionDataset) -> dict[str, tuple]:
    """``(mean, std)`` of each half on ``data``'s states: the learned policy and mental model, the
    human's expert and belief."""
    obs = torch.from_numpy(data.stacked_observations(ckpt.padding))
    model = ckpt.intervention_model()
    human_obs = data.stacked_observations(human.stacker.padding)
    expert, belief = human._model_inputs(human_obs, data.observation)
    return {
        "policy/learned": tuple(t.double() for t in model.policy(obs)),
        "policy/human": tuple(t.double() for t in expert),
        "policy/learned_mean": (model.policy(obs)[0].double(), expert[1].double()),
        "belief/learned": tuple(t.double() for t in model.mental(obs)),
        "belief/human": tuple(t.double() for t in belief),
    }


def _log_p(spread: torch.Tensor, cost: torch.Tensor, scale: torch.Tensor, dim: int) -> tuple:
    return chi2_probit_expectation(spread - 2.0 * cost, 2.0 * scale, dim)


def _fit_from(d: torch.Tensor, y: torch.Tensor, dim: int, c0: float, s0: float) -> tuple[float, torch.Tensor]:
    raw = torch.tensor([c0, math.log(s0)], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([raw], max_iter=200, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        opt.zero_grad()
        lp, ln = _log_p(d, raw[0], raw[1].exp(), dim)
        loss = -torch.where(y, lp, ln).mean()
        loss.backward()
        return loss

    return float(opt.step(nll).detach()), raw.detach()


def fit_cost_and_scale(spread: np.ndarray, intervened: np.ndarray, dim: int) -> tuple[float, float]:
    """Maximum-likelihood ``c`` and probit scale for ``P(I=1|s) = E_q Phi((D/2 - q/2 - c)/scale)``."""
    d = torch.as_tensor(spread, dtype=torch.float64)
    y = torch.as_tensor(intervened, dtype=torch.bool)
    best: tuple[float, float, float] | None = None
    # Several starts on the spread's own scale: the likelihood is not convex in (c, log scale).
    for q in (0.5, 0.8, 0.95):
        for s in (0.05, 0.3, 1.0):
            c0 = float(torch.quantile(d, q)) / 2.0
            s0 = max(float(d.std()) * s, 1e-3)
            loss, raw = _fit_from(d, y, dim, c0, s0)
            if math.isfinite(loss) and (best is None or loss < best[0]):
                best = (loss, float(raw[0]), float(raw[1].exp()))
    assert best is not None
    return best[1], best[2]


def _probability(spread: np.ndarray, cost: float, scale: float, dim: int) -> np.ndarray:
    d = torch.as_tensor(spread, dtype=torch.float64)
    lp, _ = _log_p(d, torch.tensor(cost, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64), dim)
    return lp.exp().numpy()


def _nats(p: np.ndarray, y: np.ndarray, rate: float) -> float:
    constant = float(np.mean(np.where(y, math.log(rate), math.log1p(-rate))))
    return prediction_scores(p, y)["log_likelihood"] - constant


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a - b)))) if len(a) else math.nan


def score(ckpt: MileCheckpoint, human: SimulatedHuman, train: InterventionDataset, test: InterventionDataset) -> dict:
    """AUC and nats per step over the training rate of every (policy, belief) pair, in and out of sample."""
    halves = {name: _halves(ckpt, human, data) for name, data in (("train", train), ("test", test))}
    dim = ckpt.spec.act_dim
    rate = float(np.clip(train.intervention.mean(), 1e-6, 1 - 1e-6))
    model = ckpt.intervention_model()
    out: dict[str, Any] = {"learned_cost": model.cost_value(), "learned_scale": model.sigma_value()}
    for policy in POLICIES:
        for belief in BELIEFS:
            name = f"{policy}_policy/{belief}_belief"
            spread = {
                split: gaussian_spread(*h[f"policy/{policy}"], *h[f"belief/{belief}"]).numpy()
                for split, h in halves.items()
            }
            y_train = train.intervention.astype(bool)
            cost, scale = fit_cost_and_scale(spread["train"], y_train, dim)
            row: dict[str, Any] = {"fit_cost": cost, "fit_scale": scale}
            for split, data in (("train", train), ("test", test)):
                y = data.intervention.astype(bool)
                row[f"{split}_auc"] = auc(spread[split], y)
                row[f"{split}_nats_fit"] = _nats(_probability(spread[split], cost, scale, dim), y, rate)
                if policy == belief == "learned":
                    learned = _probability(spread[split], out["learned_cost"], out["learned_scale"], dim)
                    row[f"{split}_nats_learned"] = _nats(learned, y, rate)
                    row[f"{split}_p_over_099"] = float(np.mean(learned > 0.99))
            out[name] = row
    for split, data in (("train", train), ("test", test)):
        h = halves[split]
        mu, expert = h["policy/learned"][0].numpy(), h["policy/human"][0].numpy()
        m, belief = h["belief/learned"][0].numpy(), h["belief/human"][0].numpy()
        y = data.intervention.astype(bool)
        out[f"{split}_policy_error_intervened"] = _rmse(mu[y], expert[y])
        out[f"{split}_policy_error_robot"] = _rmse(mu[~y], expert[~y])
        out[f"{split}_mental_error_to_belief"] = _rmse(m, belief)
        out[f"{split}_learned_std"] = h["policy/learned"][1].mean(0).numpy().round(4).tolist()
        out[f"{split}_human_p_auc"] = prediction_scores(
            human.intervention_probability(data.stacked_observations(human.stacker.padding), data.observation), y
        )["auc"]
    return out


def _trained(path: Path, method: str, task: str, seed: int, epochs: int | None, train, init, prior) -> MileCheckpoint:
    """``method`` trained on ``train`` with the task's single-round settings (kept at ``path``, reused)."""
    from mile_ros.baselines import method_config
    from mile_ros.baselines import train as train_method

    if path.is_file():
        return load_checkpoint(path)
    overrides = {"seed": seed} | ({"epochs": epochs} if epochs else {})
    ckpt = train_method(method, train, init, method_config(method, task, iterative=False, **overrides), prior=prior)
    ckpt.save(path)
    return ckpt


def _classifier_scores(bc: MileCheckpoint, train: InterventionDataset, test: InterventionDataset) -> dict:
    """The BC-intervention classifier on the same split, and its policy's mean error to the expert."""
    from mile_ros.baselines.bc_intervention import intervention_probability

    rate = float(np.clip(train.intervention.mean(), 1e-6, 1 - 1e-6))
    out = {}
    for split, data in (("train", train), ("test", test)):
        p = intervention_probability(bc, data.stacked_observations(bc.padding)).astype(np.float64)
        y = data.intervention.astype(bool)
        out[f"{split}_auc"] = auc(p, y)
        out[f"{split}_nats"] = _nats(p, y, rate)
    return out


def run_seed(args: argparse.Namespace, seed: int, init: MileCheckpoint, prior: InterventionDataset | None) -> dict:
    """One seed; records and checkpoints already in ``args.out`` are reused (only the human is rebuilt)."""
    started = time.perf_counter()
    files = {name: args.out / f"{name}-seed{seed}.npz" for name in ("train", "test")}
    with make_env(args.task, seed=seed) as env:
        human, _ = make_simulated_human(args.task, init, env, seed=seed, rollouts=args.mental_rollouts)
        records = {}
        for name, base, n in (("train", TRAIN_SEED, args.train_episodes), ("test", TEST_SEED, args.test_episodes)):
            if files[name].is_file():
                records[name] = InterventionDataset.load(files[name])
            else:
                records[name] = _record(env, init, human, [base + 1000 * seed + i for i in range(n)])
                records[name].save(files[name])
    train, test = records["train"], records["test"]
    record_s = time.perf_counter() - started
    trained = {
        method: _trained(args.out / f"{method}-seed{seed}.pt", method, args.task, seed, args.epochs, train, init, prior)
        for method in ("mile", "bc_intervention")
    }
    bc = trained["bc_intervention"]
    bc_mean = {
        split: bc.policy(torch.from_numpy(data.stacked_observations(bc.padding)))[0].detach().numpy()
        for split, data in (("train", train), ("test", test))
    }
    row = {
        "task": args.task,
        "seed": seed,
        "train_steps": len(train),
        "train_intervened": int(train.intervention.sum()),
        "test_steps": len(test),
        "test_intervened": int(test.intervention.sum()),
        "human_cost": human.cost,
        "human_sigma": human.sigma,
        "record_s": round(record_s, 1),
        "train_s": round(time.perf_counter() - started - record_s, 1),
        **score(trained["mile"], human, train, test),
        "classifier": _classifier_scores(bc, train, test),
    }
    for split, data in (("train", train), ("test", test)):
        expert = human._model_inputs(data.stacked_observations(human.stacker.padding), data.observation)[0][0].numpy()
        y = data.intervention.astype(bool)
        row[f"{split}_bc_policy_error_intervened"] = _rmse(bc_mean[split][y], expert[y])
        row[f"{split}_bc_policy_error_robot"] = _rmse(bc_mean[split][~y], expert[~y])
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="drawer-open-v3")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-episodes", type=int, default=4)
    p.add_argument("--test-episodes", type=int, default=4)
    p.add_argument("--mental-rollouts", type=int, help="the human's belief rollouts (default: the preset's)")
    p.add_argument("--epochs", type=int, help="MILE's epochs (default: the task's single-round setting)")
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
        made = make_initial_policy(args.task, seed=0)
        init, prior = made.checkpoint, made.demonstrations
    for seed in args.seeds:
        row = run_seed(args, seed, init, prior)
        with open(args.out / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        pairs = [k for k in row if "_policy/" in k]
        print(
            f"{args.task} seed {seed}: intervened {row['train_intervened']}/{row['train_steps']} train, "
            f"{row['test_intervened']}/{row['test_steps']} test; human AUC {row['test_human_p_auc']:.3f}",
            flush=True,
        )
        c = row["classifier"]
        print(
            f"  {'classifier (BC-intervention)':32s} AUC train {c['train_auc']:.3f} test {c['test_auc']:.3f}; "
            f"nats train {c['train_nats']:+.4f} test {c['test_nats']:+.4f}",
            flush=True,
        )
        for k in pairs:
            r = row[k]
            print(
                f"  {k:32s} AUC train {r['train_auc']:.3f} test {r['test_auc']:.3f}; "
                f"nats(fit) train {r['train_nats_fit']:+.4f} test {r['test_nats_fit']:+.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
