"""One update from recorded bags: build the dataset, train a method, publish a new checkpoint exactly once.

Any method of :mod:`mile_ros.baselines` (MILE by default) trains through ``baselines.train``, the
function the benchmark trains with.

A session's update ``n`` (trained after the intervention episodes of iteration ``n - 1``) is named
``update_{n:03d}.pt`` and seeded from ``n``, whatever else is on disk. :class:`UpdateClaim` makes one
trainer at a time the owner of that name (an ``flock`` the kernel releases when its holder dies), the
checkpoint is published with ``os.link``, which fails rather than overwrite, and a record beside it
(``update_{n:03d}.json``) says whether the update is training, done, interrupted or failed.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mile_ros import baselines
from mile_ros.learning import DatasetError, InterventionDataset, TrainingInterruptedError, load_checkpoint
from mile_ros.seeds import update_seed

from .bag_dataset import BuildReport, build_dataset, find_bags
from .bag_episode import BagError, episode_meta, interrupted_by_name

__all__ = [
    "TRAINING_SETTINGS",
    "CpuSampler",
    "ThreadGovernor",
    "TrainingError",
    "TrainingInterruptedError",
    "TrainingOutcome",
    "UpdateClaim",
    "adaptive_threads",
    "choose_threads",
    "free_cores",
    "publish_exclusive",
    "published_updates",
    "session_iteration",
    "threads_for",
    "train_from_bags",
    "trainer_config",
    "update_path",
]


class TrainingError(RuntimeError):
    """Nothing to train on, or a checkpoint that would overwrite an existing file."""


@dataclass
class TrainingOutcome:
    checkpoint: Path
    report: BuildReport
    rows: int
    intervention_rate: float
    best_epoch: int
    seconds: float
    threads: int = 1


# ---- which update, and who trains it ------------------------------------------------------------


def update_path(checkpoint_dir: str | os.PathLike, number: int) -> Path:
    return Path(checkpoint_dir) / f"update_{number:03d}.pt"


def published_updates(checkpoint_dir: str | os.PathLike) -> dict[int, Path]:
    """The updates published under ``checkpoint_dir``, by number (``update_NNN.pt``)."""
    found = {}
    for path in Path(checkpoint_dir).glob("update_[0-9]*.pt"):
        number = path.stem.removeprefix("update_")
        if number.isdigit():
            found[int(number)] = path
    return found


def session_iteration(bags_root: str | os.PathLike) -> int | None:
    """The latest iteration of the training-mode episodes under ``bags_root``, from their sidecars.

    The session manager asks for update ``n`` once the intervention episodes of iteration ``n - 1``
    are recorded, so this names the update the bags call for. None: no bag says its iteration (bags
    recorded outside a session).
    """
    root = Path(bags_root)
    if not root.is_dir():
        return None
    latest = None
    # Quarantined bags count: their episode was recorded, so the update for its iteration is due.
    for bag in find_bags(root, include_quarantined=True):
        if interrupted_by_name(bag):  # set aside by the session manager, recorded again under its name
            continue
        try:
            meta = episode_meta(bag)
        except BagError:
            continue  # a corrupt sidecar: the dataset reports it
        if meta.get("interrupted") or meta.get("mode", "train") != "train":
            continue
        it = meta.get("iteration")
        if isinstance(it, int) and not isinstance(it, bool) and it >= 0:
            latest = it if latest is None else max(latest, it)
    return latest


class UpdateClaim:
    """Exclusive ownership of one update's name in ``checkpoint_dir`` (a context manager).

    An ``flock`` on a hidden lock file: atomic, and released by the kernel when the holder exits or
    is killed, so a crashed trainer never leaves a claim behind (an ``O_EXCL`` file would). A second
    trainer waits for the first, then finds its published checkpoint. ``should_stop`` ends the wait
    with :class:`TrainingInterruptedError`.
    """

    def __init__(
        self, checkpoint_dir: str | os.PathLike, number: int, should_stop: Callable[[], bool] | None = None
    ) -> None:
        self.dir = Path(checkpoint_dir)
        self.number = number
        self.path = update_path(self.dir, number)
        self.record_path = self.path.with_suffix(".json")
        self.lock_path = self.dir / f".{self.path.stem}.lock"
        self.should_stop = should_stop
        self.waited_s = 0.0
        self._fd: int | None = None

    def __enter__(self) -> UpdateClaim:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        started = time.monotonic()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self.should_stop is not None and self.should_stop():
                        raise TrainingInterruptedError(f"stopped while waiting for {self.path.name}") from None
                    time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        self.waited_s = time.monotonic() - started
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def record(self) -> dict[str, Any]:
        """What the record says about this update ({} when there is none)."""
        try:
            data = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_record(self, **fields: Any) -> None:
        """Rewrite the record atomically (only the claim's holder writes it)."""
        data = {
            "update": self.number,
            "checkpoint": str(self.path),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.time(),
            **fields,
        }
        tmp = self.record_path.with_name(f".{self.record_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.record_path)


def publish_exclusive(staged: Path, out: Path) -> None:
    """Give the finished file ``staged`` the name ``out``; fail, changing nothing, if ``out`` exists.

    ``os.link`` is the atomic create-if-absent for a whole file (``os.replace`` would overwrite).
    """
    try:
        os.link(staged, out)
    except FileExistsError:
        raise TrainingError(f"{out} exists already; refusing to overwrite it") from None
    finally:
        staged.unlink(missing_ok=True)
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name survives a power cut once we say it is published
    finally:
        os.close(dir_fd)


# ---- torch threads from the cores actually free ------------------------------------------------


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]] | None:
    """(idle, total) jiffies per CPU in ``cpus`` from /proc/stat; None where it cannot be read."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]
        out[int(name[3:])] = (values[3] + values[4], sum(values))  # idle + iowait, all but guest
    return out or None


class CpuSampler:
    """Cores of this process's affinity set that other processes left free since the previous call.

    Busy time per CPU comes from /proc/stat; this process's own CPU time is taken out, so that a
    trainer measuring while it trains does not count itself as load.
    """

    def __init__(self) -> None:
        self.cpus = os.sched_getaffinity(0)
        self.last = self._now()

    def _now(self) -> tuple[dict[int, tuple[int, int]], float, float] | None:
        times = _cpu_times(self.cpus)
        return None if times is None else (times, time.process_time(), time.monotonic())

    def free_cores(self) -> float | None:
        now = self._now()
        if now is None or self.last is None:
            return None
        (t_now, own1, wall1), (t_then, own0, wall0) = now, self.last
        busy = 0.0
        for cpu, (i1, t1) in t_now.items():
            i0, t0 = t_then.get(cpu, (i1, t1))
            busy += 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else 0.0
        if wall1 <= wall0:
            return None
        self.last = now
        own = (own1 - own0) / (wall1 - wall0)
        return max(0.0, len(self.cpus) - max(0.0, busy - own))


def free_cores(sample_s: float = 0.3) -> float:
    """Cores of this process's affinity set that other processes are not using now.

    Measured over ``sample_s`` from /proc/stat (what is free now: the 1-minute load average lags a
    load that has just started by a minute); elsewhere, the affinity set less the load average.
    """
    sampler = CpuSampler()
    if sampler.last is not None and sample_s > 0:
        time.sleep(sample_s)
        free = sampler.free_cores()
        if free is not None:
            return free
    return max(0.0, len(sampler.cpus) - os.getloadavg()[0])


def threads_for(free: float, configured: int | None) -> int:
    """Threads for ``free`` cores: at least 1, at most ``configured`` and the affinity set.

    More threads than free cores is the expensive mistake: torch's threads wait for each other at
    every operation, and a descheduled one stalls the rest.
    """
    limit = len(os.sched_getaffinity(0))
    if configured:
        limit = min(limit, configured)
    return max(1, min(limit, int(free + 0.5)))


def choose_threads(configured: int | None = None, sample_s: float = 0.3) -> int:
    """Torch threads for the cores free now (see :func:`threads_for`); 0/None: no cap but the cores."""
    return threads_for(free_cores(sample_s), configured)


class ThreadGovernor:
    """Re-chooses torch's thread count every ``period_s`` while training, as the load comes and goes."""

    def __init__(self, configured: int | None, period_s: float = 2.0, enabled: bool = True) -> None:
        self.configured, self.period_s, self.enabled = configured, period_s, enabled
        self.sampler = CpuSampler()
        self.next = time.monotonic() + period_s
        self.used: set[int] = {torch.get_num_threads()}

    def poll(self) -> None:
        now = time.monotonic()
        if not self.enabled or now < self.next:
            return
        self.next = now + self.period_s
        free = self.sampler.free_cores()
        if free is None:
            return
        want = threads_for(free, self.configured)
        if want != torch.get_num_threads():
            torch.set_num_threads(want)
            self.used.add(want)

    def stop_check(self, should_stop: Callable[[], bool] | None = None) -> Callable[[], bool]:
        """A ``should_stop`` for the training loop: polls the free cores, then asks ``should_stop``."""

        def check() -> bool:
            self.poll()
            return should_stop is not None and should_stop()

        return check


@contextmanager
def adaptive_threads(configured: int | None, adapt: bool = True) -> Iterator[ThreadGovernor]:
    """Train inside the block on the threads the free cores allow (at most ``configured``), re-chosen
    every few seconds when the training loop is given ``governor.stop_check(...)`` as its
    ``should_stop``. Without ``adapt``: ``configured`` threads (None: torch's default), fixed."""
    before = torch.get_num_threads()
    torch.set_num_threads(choose_threads(configured) if adapt else (configured or before))
    governor = ThreadGovernor(configured, enabled=adapt)
    try:
        yield governor
    finally:
        torch.set_num_threads(before)


# A trainer's settings that override the method's own one by one (the node's typed parameters, the
# CLI's options), with their types; anything else goes in ``options`` (``"paper,lr=1e-4"``).
TRAINING_SETTINGS: dict[str, type] = {
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "select_best": bool,
    "patience": int,
    "val_fraction": float,
    "lambda_prior": float,
    "cost": float,
    "sigma": float,
    "lambda_mental": float,
    "policy_std": str,
    "cost_from_rate": bool,
    "learn_cost": bool,
    "learn_sigma": bool,
}


def trainer_config(params: Mapping[str, Any], update: int) -> Any:
    """The settings of update ``update`` from a trainer's parameters (the node's, by name).

    ``method`` (default mile) names the method; its settings are ``baselines.resolve_config`` for
    ``task`` (empty: no task preset), with ``options`` (``"variant,key=value,..."``) and then every
    :data:`TRAINING_SETTINGS` entry that is set (not None) on top. A setting the method does not have
    is refused by name. ``seed`` is the run's base seed: the update trains with
    ``update_seed(seed, update)``.
    """
    method = params.get("method") or "mile"
    given = {k: params[k] for k in TRAINING_SETTINGS if params.get(k) is not None}
    seed = update_seed(int(params.get("seed") or 0), update)
    return baselines.resolve_config(
        method, params.get("options") or "", params.get("task") or None, settings={**given, "seed": seed}
    )


# ---- the update ------------------------------------------------------------------------------


def train_from_bags(
    bags_root: str | os.PathLike,
    init_checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    config: Any = None,
    threads: int | None = None,
    prior: str | os.PathLike | None = None,
    should_stop: Callable[[], bool] | None = None,
    adapt_threads: bool = True,
    meta: dict[str, Any] | None = None,
    on_fit: Callable[[int, int], None] | None = None,
    method: str = "mile",
) -> TrainingOutcome:
    """Train ``method`` with ``config`` (None: its defaults) on every training-mode episode under
    ``bags_root``, starting from ``init_checkpoint``.

    ``out`` must not exist: a run's checkpoints are never overwritten, and the new one appears
    complete or not at all. ``prior``: an :class:`InterventionDataset` file (``.npz``) of the
    demonstrations the initial policy was cloned from, trained on with weight ``lambda_prior``
    (every method but RLIF). ``threads``: the most torch threads to use (None: the
    cores); with ``adapt_threads`` fewer while other processes keep cores busy. ``should_stop`` is
    checked before every minibatch: true ends the update with :class:`TrainingInterruptedError`,
    nothing written. ``meta`` joins the checkpoint's metadata. ``on_fit(rows, threads)`` is called
    as fitting starts.
    """
    started = time.perf_counter()
    out = Path(out)
    if out.exists():
        raise TrainingError(f"{out} exists already; refusing to overwrite it")
    init = load_checkpoint(init_checkpoint)
    prior_data = _load_prior(prior, init.spec) if prior else None
    report = build_dataset(find_bags(bags_root), spec=init.spec)
    if report.dataset is None or len(report.dataset) == 0:
        raise TrainingError(f"no usable step in the bags under {bags_root}: {report.summary()}")
    if should_stop is not None and should_stop():  # reading many bags takes a while: stop before fitting
        raise TrainingInterruptedError("stopped before fitting")
    with adaptive_threads(threads, adapt_threads) as governor:
        if on_fit is not None:
            on_fit(len(report.dataset), torch.get_num_threads())
        stop = governor.stop_check(should_stop)
        ckpt = baselines.train(method, report.dataset, init, config, prior=prior_data, should_stop=stop)
    used = sorted(governor.used)
    ds = report.dataset
    ckpt.meta.update(
        source_checkpoint=str(init_checkpoint),
        bags=[str(p) for p in report.used],
        skipped_bags=[[str(p), why] for p, why in report.skipped],
        rows=len(ds),
        intervention_rate=ds.intervention_rate,
        prior=str(prior) if prior_data is not None else None,
        torch_threads=used,
        summary=report.summary(),
        seconds=round(time.perf_counter() - started, 2),
        **(meta or {}),
    )
    # Written whole under a private name first, then linked: a reader of ``out`` never sees a partial
    # file, and a second writer of the same name fails instead of replacing the first one's update.
    staged = ckpt.save(out.with_name(f".{out.name}.{os.getpid()}.staged"))
    publish_exclusive(staged, out)
    return TrainingOutcome(
        out,
        report,
        len(ds),
        ds.intervention_rate,
        int(ckpt.meta.get("best_epoch", -1)),
        time.perf_counter() - started,
        max(used),
    )


def _load_prior(path: str | os.PathLike, spec) -> InterventionDataset:
    try:
        data = InterventionDataset.load(path)
    except (OSError, ValueError, KeyError, DatasetError) as exc:
        raise TrainingError(f"cannot read the prior {path}: {exc}") from exc
    mismatch = spec.describe_mismatch(data.spec)
    if mismatch:
        raise TrainingError(f"the prior {path} does not fit the initial policy: {mismatch}")
    return data
