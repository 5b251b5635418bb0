"""``mile-ros bench training``: the MILE update against plain behaviour cloning of the same two networks.

Both are timed in one run on the same data, so the ratio is meaningful on a noisy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .common import load_average
from .load import BusyLoad, autogroup_enabled

if TYPE_CHECKING:
    from mile_ros.learning import InterventionDataset, MileConfig

__all__ = ["LoadedUpdate", "TrainingBench", "add_arguments", "bench_training", "run", "time_update"]


@dataclass
class TrainingBench:
    label: str
    mile_step_ms: float
    bc_step_ms: float
    update_s: float | None
    rows: int
    intervention_rate: float
    update_threads: list[int] | None = None
    loaded: LoadedUpdate | None = None

    @property
    def ratio(self) -> float:
        return self.mile_step_ms / self.bc_step_ms


@dataclass
class LoadedUpdate:
    """The same update under a load the benchmark made (``processes`` busy loops in ``sessions``)."""

    processes: int
    sessions: int
    update_s: float
    threads: list[int]
    fixed_update_s: float | None = None  # with the configured threads, not adapted (the old behaviour)


def time_update(
    data: InterventionDataset, config: MileConfig, threads: int | None, adapt: bool = True
) -> tuple[float, list[int]]:
    """Seconds of one ``fit_mile`` update, and the torch thread counts it ran on."""
    from mile_ros.graph.training import adaptive_threads
    from mile_ros.learning import fit_mile

    t0 = time.perf_counter()
    with adaptive_threads(threads, adapt=adapt) as governor:
        fit_mile(data, config, should_stop=governor.stop_check())
    return time.perf_counter() - t0, sorted(governor.used)


def _median_ms(step, repeats: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_training(
    obs_dim: int,
    act_dim: int,
    discrete: bool,
    hidden: tuple[int, ...],
    rows: int = 10_000,
    batch_size: int = 1024,
    epochs: int = 300,
    repeats: int = 30,
    target_rate: float = 0.3,
    label: str = "",
    seed: int = 0,
    threads: int | None = None,
    load: int = 0,
    load_sessions: int = 1,
    compare_fixed: bool = False,
) -> TrainingBench:
    """Time one optimiser step of MILE and of BC (both networks), then a whole ``epochs`` update.

    The update runs as the trainer node runs it: on the threads the free cores allow, at most
    ``threads``. With ``load`` it is timed again while ``load`` busy loops (in ``load_sessions``
    sessions) hold the CPUs; ``compare_fixed`` times it under that load on ``threads`` fixed too.
    """
    import numpy as np
    import torch

    from mile_ros.learning import MileConfig, Spec, build_model, calibrate_cost
    from mile_ros.learning.synthetic import make_ground_truth, sample_record

    spec = Spec(obs_dim, act_dim, discrete, frame_stack=0)
    truth = make_ground_truth(spec, hidden=(64, 64), seed=seed)
    calibrate_cost(truth.model, truth.observations(4096, np.random.default_rng(seed)), target_rate)
    data = sample_record(truth, episodes=max(rows // 500, 1), steps=min(rows, 500), seed=seed)

    config = MileConfig(hidden=hidden, batch_size=batch_size, epochs=epochs, patience=None, seed=seed)
    model = build_model(spec, config)
    obs = torch.from_numpy(data.stacked_observations())
    flag = torch.from_numpy(data.intervention)
    if discrete:
        human = torch.from_numpy(np.where(data.intervention, data.human_action, 0)).long()
        robot = torch.from_numpy(data.robot_action).long()
    else:
        human = torch.from_numpy(np.nan_to_num(data.human_action)).float()
        robot = torch.from_numpy(data.robot_action).float()
    executed = torch.where(flag if discrete else flag.unsqueeze(1), human, robot)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(seed)

    def batch() -> torch.Tensor:
        return torch.randint(len(obs), (batch_size,), generator=gen)

    def mile_step() -> None:
        idx = batch()
        loss = model.losses(obs[idx], flag[idx], human[idx]).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def bc_step() -> None:  # the same two networks, each cloned on its own actions
        idx = batch()
        loss = -(
            model.policy.log_prob(obs[idx], executed[idx]).mean() + model.mental.log_prob(obs[idx], robot[idx]).mean()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # interleave so that machine noise hits both alike
    mile_ms, bc_ms = [], []
    for _ in range(3):
        mile_ms.append(_median_ms(mile_step, repeats // 3 or 1))
        bc_ms.append(_median_ms(bc_step, repeats // 3 or 1))

    update_s, used, loaded = None, None, None
    if epochs:
        update_s, used = time_update(data, config, threads)
        if load:
            with BusyLoad(load, load_sessions):
                loaded_s, loaded_used = time_update(data, config, threads)
                fixed_s = time_update(data, config, threads, adapt=False)[0] if compare_fixed else None
            loaded = LoadedUpdate(load, load_sessions, loaded_s, loaded_used, fixed_s)
    return TrainingBench(
        label,
        statistics.median(mile_ms),
        statistics.median(bc_ms),
        update_s,
        len(data),
        data.intervention_rate,
        used,
        loaded,
    )


# -- the command ------------------------------------------------------------------------------------

CASES = (
    (
        "discrete: (64, 64) MLPs, 8-d observations, 4 actions",
        dict(obs_dim=8, act_dim=4, discrete=True, hidden=(64, 64)),
    ),
    (
        "continuous: (256, 256) MLPs, 156-d observations, 4-d actions",
        dict(obs_dim=156, act_dim=4, discrete=False, hidden=(256, 256)),
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000, help="recorded steps (default 10000)")
    parser.add_argument("--epochs", type=int, default=300, help="epochs of the timed update (0: skip it)")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per method")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the steps, and the most the update may use (default: torch's choice / the cores)",
    )
    parser.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help="time the update again while N busy-loop processes, started and stopped by the bench, hold the CPUs",
    )
    parser.add_argument(
        "--load-sessions",
        type=int,
        default=1,
        metavar="K",
        help="spread the load over K sessions, as K other users' jobs (default 1)",
    )
    parser.add_argument(
        "--compare-fixed",
        action="store_true",
        help="under the load, also time the update on --threads fixed (as before the trainer adapted them)",
    )
    parser.add_argument(
        "--cases",
        choices=("both", "continuous"),
        default="both",
        help="which networks to time (continuous: only the (256, 256) case the headline figures use)",
    )


def run(args: argparse.Namespace) -> int:
    """Time the cases and print each one's step ratio and update time, then the headline figures."""
    import torch

    if args.load and not 1 <= args.load_sessions <= args.load:
        print("mile-ros bench training: --load-sessions must lie between 1 and --load", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cases = CASES[1:] if args.cases == "continuous" else CASES
    if args.load:
        print(f"{os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} ours; load average {load_average()}")
    results = []
    for label, kw in cases:
        # The load only where the headline update is timed: the last case.
        loaded = args.load if label == cases[-1][0] else 0
        r = bench_training(
            **kw,
            rows=args.rows,
            epochs=args.epochs,
            repeats=args.repeats,
            label=label,
            threads=args.threads,
            load=loaded,
            load_sessions=args.load_sessions,
            compare_fixed=args.compare_fixed,
        )
        results.append(r)
        print(f"{label} [{r.rows} steps, {r.intervention_rate:.0%} interventions, batch 1024]")
        print(f"  MILE step {r.mile_step_ms:.2f} ms, BC step {r.bc_step_ms:.2f} ms, ratio {r.ratio:.2f}")
        if r.update_s is not None:
            print(f"  {args.epochs}-epoch update: {r.update_s:.1f} s on {_threads(r.update_threads)}")
    cont = results[-1]
    print(f"ratio MILE/BC per step: {cont.ratio:.2f}")
    update = cont.update_s if cont.update_s is not None else float("nan")
    print(f"{args.epochs}-epoch update on {cont.rows} steps: {update:.1f} s")
    if cont.loaded is not None:
        lo = cont.loaded
        group = {True: "scheduled per session", False: "not grouped by session", None: "grouping unknown"}
        print(
            f"under load {lo.processes} ({lo.processes} busy loops in {lo.sessions} session(s), "
            f"{group[autogroup_enabled()]}): {lo.update_s:.1f} s on {_threads(lo.threads)}, "
            f"{lo.update_s / update:.2f}x the quiet figure"
        )
        if lo.fixed_update_s is not None:
            fixed = args.threads or torch.get_num_threads()
            print(
                f"under load {lo.processes}, {fixed} threads fixed: {lo.fixed_update_s:.1f} s, "
                f"{lo.fixed_update_s / update:.2f}x the quiet figure"
            )
    return 0


def _threads(used: list[int] | None) -> str:
    if not used:
        return "? threads"
    return f"{used[0]} thread{'s' if used[0] > 1 else ''}" if len(used) == 1 else f"{used} threads"
