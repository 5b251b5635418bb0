"""One episode's life, the same on the real arm and in simulation: start, steps, pause, the end and why.

ROS-free. ``widowx_driver`` and the Metaworld bridge (through :class:`mile_ros.graph.sim_bridge.BridgeCore`)
each hold one :class:`Episode` and only translate: services and topics in, the returned
:class:`EpisodeEnd` out as ``/episode/end``. The phases:

- ``idle``: no episode yet (the simulator before its first reset);
- ``running``: commands are executed and counted as steps;
- ``paused``: stopped from outside (the node deactivated, a lifecycle transition): no steps until resumed;
- ``waiting``: started while the operator's gamepad is missing; it runs when the pad is back;
- ``ended``: an end was decided; nothing runs until the next :meth:`Episode.start`.

An episode ends, at most once, by a step (the task's success or termination, or the step limit),
by the operator's verdict (``success``, ``failure``, ``discard``) or by the loss of the operator's
gamepad (``pad_lost``). Starting again while running restarts without an end (as both nodes did).
"""

from __future__ import annotations

from dataclasses import dataclass

from mile_ros.graph.topics import END_DISCARD

__all__ = [
    "ENDED",
    "FAILURE",
    "IDLE",
    "OPERATOR_REASONS",
    "PAD_LOST",
    "PAUSED",
    "RUNNING",
    "SUCCESS",
    "TERMINATED",
    "TIME_LIMIT",
    "WAITING",
    "Episode",
    "EpisodeEnd",
]

IDLE, RUNNING, PAUSED, WAITING, ENDED = "idle", "running", "paused", "waiting", "ended"

# Reasons, the frame_id of /episode/end.
SUCCESS, FAILURE, TERMINATED, TIME_LIMIT, PAD_LOST = "success", "failure", "terminated", "time_limit", "pad_lost"
OPERATOR_REASONS = (SUCCESS, FAILURE, END_DISCARD)


@dataclass(frozen=True)
class EpisodeEnd:
    """How an episode ended: what ``/episode/end`` carries (the node adds stamps and durations)."""

    reason: str
    steps: int
    success: bool
    episode_return: float


class Episode:
    """The episode state machine shared by the robot's driver and the simulator's bridge.

    ``max_steps``: the step limit (reason ``time_limit``); 0 means none. ``running``: start in an
    episode (the driver accepts commands from start-up, before any reset) instead of ``idle``.
    """

    def __init__(self, max_steps: int = 0, running: bool = False) -> None:
        if max_steps < 0:
            raise ValueError(f"max_steps must be >= 0 (0: no limit), not {max_steps}")
        self.max_steps = int(max_steps)
        self.phase = RUNNING if running else IDLE
        self.steps = 0
        self.success = False  # the latest step's success flag, or the operator's verdict at the end
        self.episode_return = 0.0
        self.last_end: EpisodeEnd | None = None
        # None: nobody reports on the operator's pad (the simulator, the plain joy node); the episode
        # only waits for a pad that was seen missing.
        self.operator_present: bool | None = None

    @property
    def running(self) -> bool:
        """Whether commands are to be executed now."""
        return self.phase == RUNNING

    @property
    def ended(self) -> bool:
        """No episode to run or resume (idle or ended): only :meth:`start` begins one."""
        return self.phase in (IDLE, ENDED)

    def start(self) -> str:
        """Begin a new episode (counters to zero); ``waiting`` while the operator's pad is missing."""
        self.steps, self.success, self.episode_return, self.last_end = 0, False, 0.0, None
        self.phase = WAITING if self.operator_present is False else RUNNING
        return self.phase

    def step(
        self, reward: float = 0.0, success: bool = False, terminated: bool = False, truncated: bool = False
    ) -> EpisodeEnd | None:
        """Count one executed step; return the end if this step ended the episode.

        The reason, first that applies: ``success`` (successful and terminated), ``terminated``,
        ``time_limit`` (the step limit reached, or the task truncated the episode).
        """
        if self.phase != RUNNING:
            raise RuntimeError(f"no episode running (it is {self.phase}): start one first")
        self.steps += 1
        self.episode_return += float(reward)
        self.success = bool(success)
        if success and terminated:
            return self._end(SUCCESS)
        if terminated:
            return self._end(TERMINATED)
        if truncated or (self.max_steps and self.steps >= self.max_steps):
            return self._end(TIME_LIMIT)
        return None

    def end(self, reason: str, reward: float = 0.0) -> EpisodeEnd | None:
        """The operator's verdict (``success``, ``failure`` or ``discard``), which ``reward`` may add to
        the return. Only a running episode ends: a press between episodes, while paused or while
        waiting for the pad ends nothing (None)."""
        if reason not in OPERATOR_REASONS:
            raise ValueError(f"an operator ends an episode with one of {', '.join(OPERATOR_REASONS)}, not {reason!r}")
        if self.phase != RUNNING:
            return None
        self.success = reason == SUCCESS
        self.episode_return += float(reward)
        return self._end(reason)

    def operator(self, present: bool) -> EpisodeEnd | None:
        """The operator's gamepad came (``True``) or went. Losing it while running ends the episode
        (``pad_lost``); getting it back starts an episode that was waiting for it."""
        self.operator_present = bool(present)
        if not present and self.phase == RUNNING:
            self.success = False
            return self._end(PAD_LOST)
        if present and self.phase == WAITING:
            self.phase = RUNNING
        return None

    def pause(self) -> None:
        """Stop executing commands until :meth:`resume`; nothing to pause between episodes."""
        if self.phase in (RUNNING, WAITING):
            self.phase = PAUSED

    def resume(self) -> bool:
        """Continue a paused episode (or keep a running or waiting one); False after an end or before
        any start: there is no episode to resume."""
        if self.phase == PAUSED:
            self.phase = WAITING if self.operator_present is False else RUNNING
        return not self.ended

    def _end(self, reason: str) -> EpisodeEnd:
        self.phase = ENDED
        self.last_end = EpisodeEnd(reason, self.steps, self.success, self.episode_return)
        return self.last_end
