"""Speed of the MILE update against plain behaviour cloning of the same two networks.

Both are timed in one run on the same data, so the ratio is meaningful on a noisy machine.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from mile_ros.graph.training import adaptive_threads
from mile_ros.learning import InterventionDataset, MileConfig, Spec, build_model, calibrate_cost, fit_mile
from mile_ros.learning.synthetic import make_ground_truth, sample_record

from .load import BusyLoad

__all__ = ["LoadedUpdate", "TrainingBench", "bench_training", "time_update"]


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
