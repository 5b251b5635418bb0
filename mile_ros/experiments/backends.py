"""Where the benchmark's jobs run: a process pool on this machine (the default) or a Ray cluster.

Both hand back :class:`concurrent.futures.Future` objects (a Ray ``ObjectRef`` has ``.future()``),
so the runner submits and waits the same way whichever runs the cells, and the CSV, the resume and
the records stay the driver's: the driver appends a cell's rows when its future completes, and each
cell writes its record under ``OUT/records`` itself. On Ray that is the worker's file system, so every
node must see ``OUT`` at the same path (one machine, or shared storage such as NFS):
:meth:`RayPool.check_shared` proves it on every node before a cell runs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol

__all__ = ["BACKENDS", "Pool", "RayPool", "RayUnavailableError", "connect_ray", "make_pool"]

BACKENDS = ("process", "ray")


class Pool(Protocol):
    """What the runner needs of a pool (ProcessPoolExecutor has it)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


class RayUnavailableError(ValueError):
    """No usable Ray cluster (not installed, nothing at the address, OUT not shared): nothing ran."""


def make_pool(backend: str = "process", workers: int = 2, address: str | None = None, out: Path | None = None):
    """A pool for ``backend``, or None to run the jobs in this process (``process`` with one worker).

    ``ray`` uses the cluster's CPUs, one per job, whatever ``workers`` says; ``out`` is checked to be
    shared with every node.
    """
    if backend == "process":
        if workers <= 1:
            return None
        # spawn: forked children of a process that has run torch can hang
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    if backend == "ray":
        pool = RayPool(address)
        if out is not None:
            try:
                pool.check_shared(Path(out))
            except BaseException:
                pool.shutdown()
                raise
        return pool
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def connect_ray(address: str | None = None) -> bool:
    """Connect this process to a running Ray cluster; True if this call made the connection.

    ``address``: ``HOST:PORT`` of the head's GCS, ``ray://HOST:PORT`` for Ray Client, or None for
    ``$RAY_ADDRESS`` or the cluster that ``ray start --head`` started on this machine. Never starts a
    cluster of its own: a sweep that meant to use a cluster must not quietly run on this machine.
    """
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--backend ray needs the ray package: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    _check_listening(target)
    try:
        ray.init(address=target, log_to_driver=True, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "on this machine (nor $RAY_ADDRESS)"
        raise RayUnavailableError(
            f"no Ray cluster {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
            "start one with `ray start --head` and pass its address with --address"
        ) from None
    return True


def _check_listening(address: str, timeout: float = 5.0) -> None:
    """Refuse an address where nothing listens: ray.init would retry it for many minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():  # "auto", or a form Ray resolves itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailableError(
            f"no Ray cluster at {address}: nothing answers there ({exc.strerror or exc}); start one with "
            "`ray start --head` and pass the address it prints"
        ) from None


def _probe(token_path: str) -> dict[str, Any]:
    """Runs on a node: can it read the driver's token, and import this package?"""
    import socket

    import mile_ros

    try:
        token = Path(token_path).read_text()
    except OSError:
        token = None
    return {"host": socket.gethostname(), "token": token, "package": str(Path(mile_ros.__file__).parent)}


class RayPool:
    """Jobs as Ray tasks (one CPU each) on the connected cluster."""

    def __init__(self, address: str | None = None) -> None:
        import ray

        self._ray = ray
        self._owns = connect_ray(address)
        self._remotes: dict[Callable, Any] = {}
        self._refs: list[Any] = []
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < 1:
            self.shutdown()
            raise RayUnavailableError(f"the Ray cluster has no CPU to run a cell on ({cpus})")

    def _remote(self, fn: Callable) -> Any:
        if fn not in self._remotes:
            # One CPU per job, as one process of the pool; torch is held to one thread inside the jobs.
            self._remotes[fn] = self._ray.remote(num_cpus=1)(fn)
        return self._remotes[fn]

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        ref = self._remote(fn).remote(*args)
        self._refs.append(ref)
        return ref.future()

    def check_shared(self, out: Path) -> None:
        """Every alive node reads a token written here under ``out`` and imports mile_ros; else refuse."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        out.mkdir(parents=True, exist_ok=True)
        token_path = out.resolve() / f".ray-probe-{uuid.uuid4().hex}"
        token = uuid.uuid4().hex
        token_path.write_text(token)
        try:
            nodes = [n for n in self._ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
            probe = self._ray.remote(num_cpus=0)(_probe)
            refs = {
                n["NodeManagerAddress"]: probe.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(str(token_path))
                for n in nodes
            }
            results = {}
            for where, ref in refs.items():
                try:
                    results[where] = self._ray.get(ref, timeout=120)
                except Exception as exc:  # an import error there, or a node that never answers
                    raise RayUnavailableError(
                        f"Ray node {where} cannot run the benchmark's jobs ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[-1] if str(exc) else ''}); it needs mile_ros installed in the "
                        "same environment as this one"
                    ) from None
        finally:
            token_path.unlink(missing_ok=True)
        blind = sorted(where for where, r in results.items() if r["token"] != token)
        if blind:
            raise RayUnavailableError(
                f"Ray node(s) {', '.join(blind)} do not see {out.resolve()}: the cells write their records and "
                "cache there, so --out must be on storage every node mounts at the same path"
            )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel what has not finished (``cancel_futures``) and disconnect if this pool connected."""
        if cancel_futures:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # finished or gone already: nothing to cancel
                    self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False
