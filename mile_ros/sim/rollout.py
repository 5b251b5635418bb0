"""Episodes in simulation: a robot policy, optionally overseen by a simulated human, and evaluation.

:func:`run_episode` records every step as ``(s, a_R, I, a_H)`` exactly as the ROS recorder does;
:func:`evaluate` measures success over a fixed list of seeds so that every method meets the same
episodes. With ``ask`` the robot asks for help as the arbitration node does
(:mod:`mile_ros.graph.asking`); its held steps are left out of the record, as the ROS record leaves
out ``hold`` commands.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mile_ros.graph.arbitration import ArbitrationConfig, hold_action
from mile_ros.graph.asking import AskConfig, HelpRequester
from mile_ros.learning import InterventionDataset, MileCheckpoint, PolicyRunner, Spec, load_checkpoint

from .envs import SimEnv, make_env

__all__ = [
    "Actor",
    "Episode",
    "EvalResult",
    "episodes_to_dataset",
    "evaluate",
    "run_episode",
    "single_torch_thread",
    "takeover_count",
]


class Actor(Protocol):
    """Anything that acts one frame at a time, like :class:`~mile_ros.learning.PolicyRunner`."""

    def reset(self) -> None: ...

    def act(self, frame: np.ndarray) -> Any: ...


class Overseer(Protocol):
    """A human that watches each frame and may take over (see :class:`~mile_ros.sim.SimulatedHuman`)."""

    last_probability: float

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, frame: np.ndarray) -> tuple[bool, Any]: ...


def takeover_count(intervention: np.ndarray) -> int:
    """How many takeovers (runs of intervened steps) one episode's flags hold."""
    flags = np.asarray(intervention, dtype=bool)
    return int(np.count_nonzero(flags[1:] & ~flags[:-1]) + (len(flags) > 0 and flags[0]))


@dataclass
class Episode:
    """One episode's record (arrays empty when not recorded) and its summary."""

    task: str
    seed: int
    spec: Spec
    observation: np.ndarray
    robot_action: np.ndarray
    intervention: np.ndarray
    human_action: np.ndarray
    step: np.ndarray
    reward: np.ndarray
    predicted_intervention: np.ndarray  # P(I=1|s) from the simulated human; NaN without one
    success: bool
    episode_return: float
    length: int
    intervention_count: int
    wall_time: float
    # Asking for help (run_episode's ``ask``): per recorded step whether the robot held, waiting for an
    # answer (empty without asking), and the requests' counts.
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    help_requests: int = 0
    requests_answered: int = 0
    requests_timed_out: int = 0
    held_steps: int = 0

    @property
    def takeovers(self) -> int:
        """Takeovers in this episode (needs the record)."""
        if len(self.intervention) != self.length:
            raise ValueError("episode was run with record=False; its takeovers were not kept")
        return takeover_count(self.intervention)

    @property
    def intervention_rate(self) -> float:
        return self.intervention_count / self.length if self.length else 0.0

    @property
    def steps_per_second(self) -> float:
        return self.length / self.wall_time if self.wall_time > 0 else math.inf

    def to_dataset(self, episode_id: int) -> InterventionDataset:
        """This episode as rows of an :class:`InterventionDataset` with the given episode id (held
        steps left out, as from a bag)."""
        if len(self.observation) != self.length:
            raise ValueError("episode was run with record=False; nothing to turn into a dataset")
        if self.held.any():
            keep = ~self.held
            return InterventionDataset(
                self.spec,
                self.observation[keep],
                self.robot_action[keep],
                self.intervention[keep],
                self.human_action[keep],
                np.full(int(keep.sum()), episode_id, dtype=np.int64),
                self.step[keep],
            )
        return InterventionDataset(
            self.spec,
            self.observation,
            self.robot_action,
            self.intervention,
            self.human_action,
            np.full(self.length, episode_id, dtype=np.int64),
            self.step,
        )


def episodes_to_dataset(episodes: Sequence[Episode], first_id: int = 0) -> InterventionDataset:
    """Episodes numbered ``first_id, first_id + 1, ...`` joined into one dataset."""
    if not episodes:
        raise ValueError("no episodes to turn into a dataset")
    return InterventionDataset.concatenate([ep.to_dataset(first_id + i) for i, ep in enumerate(episodes)])


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block.

    One observation at a time is far too little work to share between threads: measured on this
    2-core machine under load, a (256, 256) MLP step took 6.4 ms with 2 threads and 0.06 ms with 1.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_episode(
    env: SimEnv,
    actor: Actor,
    seed: int,
    human: Overseer | None = None,
    record: bool = True,
    ask: AskConfig | None = None,
) -> Episode:
    """Run one episode from ``env.reset(seed)``.

    Each step the human (when given) decides first, from what it has seen so far; the robot's action
    is computed every step and recorded whether or not it is executed; the human's action is
    executed when intervening. Torch runs single-threaded meanwhile (see :func:`single_torch_thread`).

    ``ask``: the robot asks for help. After the robot's action, its ``P(I=1|s)`` (the actor's
    ``intervention_probability()``, a :class:`~mile_ros.learning.PolicyRunner` of a checkpoint with an
    intervention model) steps a :class:`~mile_ros.graph.asking.HelpRequester`; while a request is open
    the robot holds (arbitration's ``hold``) and the human sees it from the next step on
    (``human.act(frame, asked=True)``).
    """
    if ask is not None:
        if env.spec.discrete:
            raise ValueError("asking for help holds the arm still: it needs continuous actions")
        if not callable(getattr(actor, "intervention_probability", None)):
            raise ValueError("asking for help needs an actor with intervention_probability() (a PolicyRunner)")
    with single_torch_thread():
        return _run_episode(env, actor, seed, human, record, ask)


def _run_episode(
    env: SimEnv, actor: Actor, seed: int, human: Overseer | None, record: bool, ask: AskConfig | None = None
) -> Episode:
    spec = env.spec
    discrete = spec.discrete
    started = time.perf_counter()
    frame = env.reset(seed)
    actor.reset()
    if human is not None:
        human.reset(seed)
    frames, robot, flags, humans, rewards, probs, held = [], [], [], [], [], [], []
    no_action: Any = -1 if discrete else np.full(spec.act_dim, np.nan, dtype=np.float32)
    success, interventions = False, 0
    requester = HelpRequester(ask) if ask is not None else None
    gripper = ArbitrationConfig().gripper_index
    last_executed: Any = np.zeros(spec.act_dim)
    while True:
        if human is None:
            intervene, human_action = False, None
        elif requester is None:
            intervene, human_action = human.act(frame)
        else:
            intervene, human_action = human.act(frame, asked=requester.asking)
        robot_action = actor.act(frame)
        executed = human_action if intervene else robot_action
        hold = False
        if requester is not None:
            hold = requester.step(actor.intervention_probability(), bool(intervene)).asking
            if hold:
                executed = hold_action(last_executed, gripper).astype(np.float32)
            last_executed = executed
        result = env.step(executed)
        interventions += int(intervene)
        success = success or result.success
        if record:
            frames.append(frame)
            robot.append(robot_action)
            flags.append(intervene)
            humans.append(human_action if intervene else no_action)
            rewards.append(result.reward)
            probs.append(human.last_probability if human is not None else math.nan)
            held.append(hold)
        frame = result.obs
        if result.done:
            break
    act_dtype = np.int64 if discrete else np.float32
    act_shape = (0,) if discrete else (0, spec.act_dim)

    def array(rows: list, dtype: Any, empty_shape: tuple) -> np.ndarray:
        return np.asarray(rows, dtype=dtype) if rows else np.zeros(empty_shape, dtype=dtype)

    return Episode(
        task=env.task,
        seed=int(seed),
        spec=spec,
        observation=array(frames, np.float32, (0, spec.obs_dim)),
        robot_action=array(robot, act_dtype, act_shape),
        intervention=array(flags, bool, (0,)),
        human_action=array(humans, act_dtype, act_shape),
        step=np.arange(len(frames), dtype=np.int64),
        reward=array(rewards, np.float64, (0,)),
        predicted_intervention=array(probs, np.float64, (0,)),
        success=bool(success),
        episode_return=float(env.episode_return),
        length=int(env.steps),
        intervention_count=interventions,
        wall_time=time.perf_counter() - started,
        **(
            {}
            if requester is None
            else {
                "held": array(held, bool, (0,)),
                "help_requests": requester.requests,
                "requests_answered": requester.answered,
                "requests_timed_out": requester.timed_out,
                "held_steps": requester.held_steps,
            }
        ),
    )


@dataclass
class EvalResult:
    """Success and return over a fixed list of seeded episodes (s.e. = std / sqrt(n))."""

    task: str
    seeds: list[int]
    successes: list[bool]
    returns: list[float]
    lengths: list[int]
    wall_time: float
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def episodes(self) -> int:
        return len(self.seeds)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else math.nan

    @property
    def success_se(self) -> float:
        return _standard_error(np.asarray(self.successes, dtype=float))

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def return_se(self) -> float:
        return _standard_error(np.asarray(self.returns, dtype=float))

    @property
    def steps_per_second(self) -> float:
        return sum(self.lengths) / self.wall_time if self.wall_time > 0 else math.inf

    def summary(self) -> str:
        return (
            f"{self.task}: success {self.success_rate:.2f} ± {self.success_se:.2f}, "
            f"return {self.mean_return:.1f} ± {self.return_se:.1f} over {self.episodes} episodes "
            f"({self.wall_time:.1f} s, {self.steps_per_second:.0f} steps/s, {self.workers} worker(s))"
        )


def _standard_error(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def _eval_serial(
    task: str, actor: Actor, seeds: Sequence[int], stop_on_success: bool, kept: list[Episode] | None = None
) -> list[tuple]:
    env = make_env(task, seed=int(seeds[0]) if seeds else 0, stop_on_success=stop_on_success)
    try:
        out = []
        for s in seeds:
            ep = run_episode(env, actor, int(s), record=kept is not None)
            out.append((ep.success, ep.episode_return, ep.length))
            if kept is not None:
                kept.append(ep)
        return out
    finally:
        env.close()


def _eval_worker(task: str, checkpoint_path: str, seeds: list[int], stop_on_success: bool) -> list[tuple]:
    import torch

    torch.set_num_threads(1)  # one core per worker: the pool supplies the parallelism
    runner = PolicyRunner(load_checkpoint(checkpoint_path))
    return _eval_serial(task, runner, seeds, stop_on_success)


# spawn, not fork: a forked child of a process that has used torch's thread pool can hang.
START_METHOD = "spawn"


def _default_workers(n_episodes: int) -> int:
    # Measured on the 2-core machine: a spawned worker spends seconds (tens of seconds under load)
    # importing torch and Metaworld, while 20 Metaworld episodes take 5-15 s in one process; so
    # the default stays serial and callers that evaluate long runs ask for workers explicitly.
    return 1


def evaluate(
    task: str,
    checkpoint_or_actor: str | os.PathLike | MileCheckpoint | Actor,
    episodes: int,
    seed: int = 0,
    workers: int | None = None,
    stop_on_success: bool = True,
    keep_episodes: bool = False,
) -> EvalResult:
    """Run the policy (deterministically) on seeds ``seed, seed + 1, ..., seed + episodes - 1``.

    A checkpoint (path or object) can be evaluated by several processes; an arbitrary actor runs
    in this process. ``workers=None`` means one process (spawning workers costs more than it saves for
    the usual 10-50 episodes on two cores; see :func:`_default_workers`). ``keep_episodes`` records
    the episodes in ``extra["episodes"]`` (one process only).
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    seeds = list(range(seed, seed + episodes))
    is_checkpoint = isinstance(checkpoint_or_actor, (str, os.PathLike, MileCheckpoint))
    n_workers = (workers if workers is not None else _default_workers(episodes)) if is_checkpoint else 1
    n_workers = max(1, min(n_workers, episodes))
    if keep_episodes and n_workers > 1:
        raise ValueError("keep_episodes records the episodes in this process: use one worker")
    kept: list[Episode] | None = [] if keep_episodes else None
    started = time.perf_counter()
    if n_workers == 1:
        if isinstance(checkpoint_or_actor, (str, os.PathLike)):
            actor: Actor = PolicyRunner(load_checkpoint(checkpoint_or_actor))
        elif isinstance(checkpoint_or_actor, MileCheckpoint):
            actor = PolicyRunner(checkpoint_or_actor)
        else:
            actor = checkpoint_or_actor
        rows = _eval_serial(task, actor, seeds, stop_on_success, kept)
    else:
        rows = _eval_parallel(task, checkpoint_or_actor, seeds, n_workers, stop_on_success)
    successes, returns, lengths = (list(col) for col in zip(*rows))
    return EvalResult(
        task,
        seeds,
        [bool(s) for s in successes],
        [float(r) for r in returns],
        [int(n) for n in lengths],
        time.perf_counter() - started,
        n_workers,
        {"episodes": kept} if kept is not None else {},
    )


def _eval_parallel(
    task: str,
    checkpoint: str | os.PathLike | MileCheckpoint,
    seeds: list[int],
    workers: int,
    stop_on_success: bool,
) -> list[tuple]:
    with tempfile.TemporaryDirectory(prefix="mile_eval_") as tmp:
        if isinstance(checkpoint, MileCheckpoint):
            path = str(checkpoint.save(Path(tmp) / "policy.pt"))
        else:
            path = str(checkpoint)
            load_checkpoint(path)  # fail here, with the checkpoint's own message, not in a worker
        chunks = [seeds[i::workers] for i in range(workers)]  # interleaved: long and short episodes mix
        ctx = multiprocessing.get_context(START_METHOD)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            parts = list(
                pool.map(_eval_worker, [task] * workers, [path] * workers, chunks, [stop_on_success] * workers)
            )
    by_seed = {s: row for chunk, part in zip(chunks, parts) for s, row in zip(chunk, part)}
    return [by_seed[s] for s in seeds]
