"""A policy that can be replaced while it runs: load in the background, swap atomically.

The frame history lives outside the checkpoint, so a new policy continues the current episode's
stack instead of starting it over; a command is produced for every observation, before, during
and after a load.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mile_ros.learning import FrameStacker, MileCheckpoint, PolicyRunner, Spec, load_checkpoint

__all__ = ["SwappablePolicy"]


# Threads put on normal scheduling on purpose (checkpoint loads): a node's real-time watch skips them.
# Kept after the thread ends (one id per load), so that its last instants are never taken for a demotion.
NORMAL_BY_DESIGN: set[int] = set()


def _drop_to_normal_scheduling() -> None:
    """Put the calling thread on normal scheduling at niceness >= 0.

    A thread inherits its creator's scheduling: started from a control-path node running under
    SCHED_FIFO or a negative niceness, a checkpoint load (bulk file and torch work) would outrank
    rendering and the robot bridge on its core. Lowering one's own priority needs no privilege.
    """
    tid = threading.get_native_id()
    NORMAL_BY_DESIGN.add(tid)
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no sched_* off Linux
        if os.sched_getscheduler(tid) != os.SCHED_OTHER:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        if os.getpriority(os.PRIO_PROCESS, tid) < 0:
            os.setpriority(os.PRIO_PROCESS, tid, 0)


class SwappablePolicy:
    def __init__(self, checkpoint: MileCheckpoint, path: str = "", deterministic: bool = True) -> None:
        self.deterministic = deterministic
        self.spec: Spec = checkpoint.spec
        self.stacker = FrameStacker(self.spec.obs_dim, self.spec.frame_stack, checkpoint.padding)
        self.runner = self._runner(checkpoint)
        self.path = path
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: str, deterministic: bool = True) -> SwappablePolicy:
        return cls(load_checkpoint(path), str(path), deterministic)

    def _runner(self, checkpoint: MileCheckpoint) -> PolicyRunner:
        runner = PolicyRunner(checkpoint, deterministic=self.deterministic)
        runner.stacker = self.stacker  # one history, whichever policy acts
        return runner

    def reset(self) -> None:
        with self._lock:
            self.stacker.reset()

    def act(self, frame: np.ndarray) -> tuple[np.ndarray, float | None, np.ndarray]:
        """(action, predicted P(I=1|s) or None, the single frame used)."""
        with self._lock:
            action = self.runner.act(frame)
            return (
                np.asarray(action, dtype=np.float64),
                self.runner.intervention_probability(),
                self.runner.last_stacked,
            )

    def load_async(self, path: str, done: Callable[[str, str | None], None]) -> None:
        """Load ``path`` in a thread; swap it in when ready; call ``done(path, error_or_None)``."""

        def work() -> None:
            _drop_to_normal_scheduling()
            try:
                checkpoint = load_checkpoint(Path(path), expected=self.spec)
                runner = self._runner(checkpoint)
            except Exception as exc:  # CheckpointError and anything torch raises on a bad file
                done(path, str(exc))
                return
            with self._lock:
                self.runner, self.path = runner, str(path)
            done(path, None)

        self._loading = threading.Thread(target=work, name="checkpoint-loader", daemon=True)
        self._loading.start()
