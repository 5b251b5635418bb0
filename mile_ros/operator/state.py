"""What the operator's screen knows about a running session, fed by the session's messages (no rclpy).

Every ``on_*`` method takes one message's content, already decoded by the screen's node
(:mod:`mile_ros.cli.screen`); the properties derive what is shown. The episode in progress comes from
the recorder's ``episode_info`` parameter, which the session manager sets before each episode (seen on
``/parameter_events``); its steps are the distinct stamps of ``/mile/executed_action`` since then.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CurvePoint", "Episode", "ScreenState", "TrainerStatus"]


@dataclass
class Episode:
    iteration: int | None = None
    index: int | None = None
    mode: str = ""  # train (the human may take over) or eval (the policy alone)
    seed: int | None = None
    started: float = 0.0  # monotonic
    steps: int = 0
    human_steps: int = 0
    ended: float | None = None
    end_reason: str = ""
    success: bool | None = None

    @property
    def name(self) -> str:
        if self.iteration is None:
            return "waiting for the first episode"
        what = {"train": "intervention episode", "eval": "evaluation (policy alone)"}.get(self.mode, self.mode)
        return f"iteration {self.iteration} · {what} {self.index}"


@dataclass
class CurvePoint:
    iteration: int
    eval: list[bool] = field(default_factory=list)  # policy-alone successes
    train: list[bool] = field(default_factory=list)  # with the human
    steps: int = 0
    interventions: int = 0

    @staticmethod
    def rate(values: list[bool]) -> float | None:
        return sum(values) / len(values) if values else None

    @property
    def eval_rate(self) -> float | None:
        return self.rate(self.eval)

    @property
    def train_rate(self) -> float | None:
        return self.rate(self.train)

    @property
    def intervention_rate(self) -> float | None:
        return self.interventions / self.steps if self.steps else None


@dataclass
class TrainerStatus:
    training: bool = False
    update: int | None = None  # the update being trained, or the last one done
    since: float = 0.0  # monotonic, when the current update was asked for
    last_seconds: float | None = None  # how long the last update took (the estimate for the next)
    last_rows: int | None = None
    checkpoint: str = ""


class ScreenState:
    def __init__(self, clock: Callable[[], float] = time.monotonic, history: int = 240) -> None:
        self.clock = clock
        self.episode = Episode()
        self.episodes_seen: set[str] = set()
        self.stamps: set[int] = set()
        self.human_stamps: set[int] = set()
        self.takeover = False  # /mile/intervention
        self.source = ""  # frame_id of the latest executed command: robot, human or hold
        self.p_intervene: float | None = None
        self.p_history: deque[float] = deque(maxlen=history)
        self.pressed: set[int] = set()
        self.curve: dict[int, CurvePoint] = {}
        self.trainer = TrainerStatus()
        self.active_checkpoint = ""
        self.last_progress = ""
        self.done = False
        self.messages = 0

    # ---- inputs ------------------------------------------------------------------------------------

    def on_episode_info(self, info: dict[str, Any]) -> None:
        """The recorder's episode_info for the next episode: a new episode starts."""
        self.messages += 1
        self.episode = Episode(
            iteration=info.get("iteration"),
            index=info.get("episode"),
            mode=str(info.get("mode", "")),
            seed=info.get("seed"),
            started=self.clock(),
        )
        self.stamps.clear()
        self.human_stamps.clear()
        self.p_history.clear()
        self.takeover = False

    def on_executed(self, stamp_ns: int, source: str) -> None:
        self.messages += 1
        self.source = source
        if self.episode.ended is not None or self.episode.iteration is None:
            return  # late messages of the episode that ended, or before the screen knew one
        if stamp_ns not in self.stamps:  # a repeated stamp is the same step (lockstep resends)
            self.stamps.add(stamp_ns)
            if source == "human":
                self.human_stamps.add(stamp_ns)
        self.episode.steps = len(self.stamps)
        self.episode.human_steps = len(self.human_stamps)

    def on_intervention(self, flag: bool) -> None:
        self.messages += 1
        self.takeover = bool(flag)

    def on_probability(self, p: float) -> None:
        self.messages += 1
        self.p_intervene = float(p)
        self.p_history.append(float(p))

    def on_joy(self, buttons: Iterable[int]) -> None:
        self.pressed = {i for i, b in enumerate(buttons) if b}

    def on_episode_end(self, reason: str, values: dict[str, float]) -> None:
        self.messages += 1
        self.episode.ended = self.clock()
        self.episode.end_reason = reason
        if "success" in values:
            self.episode.success = bool(values["success"])
        self.takeover = False

    def on_active_checkpoint(self, path: str) -> None:
        self.active_checkpoint = path

    def on_progress(self, data: dict[str, Any]) -> None:
        """A /session/progress message (the session manager's JSON)."""
        self.messages += 1
        self.last_progress = str(data.get("text", ""))
        if data.get("result"):
            self.add_episode(data["result"], data.get("episode"))
        if data.get("update"):
            update = data["update"]
            self.trainer = TrainerStatus(
                training=False,
                update=update.get("update"),
                last_seconds=update.get("seconds"),
                last_rows=update.get("rows"),
                checkpoint=str(update.get("checkpoint", "")),
            )
        elif "training" in self.last_progress and not data.get("result"):
            # "iteration N: training MILE on the bags so far": update N + 1 is being trained.
            head = self.last_progress.split(":", 1)[0].removeprefix("iteration ").strip()
            number = int(head) + 1 if head.isdigit() else None
            self.trainer = TrainerStatus(
                training=True,
                update=number,
                since=self.clock(),
                last_seconds=self.trainer.last_seconds,
                last_rows=self.trainer.last_rows,
                checkpoint=self.trainer.checkpoint,
            )
        if data.get("done"):
            self.done = True

    def add_episode(self, record: dict[str, Any], name: str | None = None) -> None:
        """One finished episode's record (a progress result, or metrics.json's ``episodes``)."""
        key = name or record.get("name") or f"{record.get('iteration')}/{record.get('mode')}_{record.get('episode')}"
        it = record.get("iteration")
        if key in self.episodes_seen or not isinstance(it, int) or record.get("discarded"):
            return
        self.episodes_seen.add(key)
        point = self.curve.setdefault(it, CurvePoint(it))
        success = bool(record.get("success"))
        if record.get("mode") == "eval":
            point.eval.append(success)
        else:
            point.train.append(success)
            point.steps += int(record.get("steps", 0) or 0)
            point.interventions += int(record.get("interventions", 0) or 0)

    # ---- derived -----------------------------------------------------------------------------------

    def elapsed(self) -> float:
        if self.episode.iteration is None:
            return 0.0
        return (self.episode.ended or self.clock()) - self.episode.started

    def trainer_fraction(self) -> float | None:
        """Estimated share of the update done (elapsed over the last update's duration), or None."""
        t = self.trainer
        if not t.training or not t.last_seconds:
            return None
        return min(0.99, (self.clock() - t.since) / t.last_seconds)

    def trainer_elapsed(self) -> float:
        return self.clock() - self.trainer.since if self.trainer.training else 0.0
