"""Running counts of one episode as the recorder sees it: steps, interventions, success, completeness.

The bridge's ``/episode/end`` says how many steps the episode had and how long it lasted, which
fixes the episode's stamp window ``[end - duration, end)``. Messages outside it are late arrivals
from the previous episode or answers to the final observation; inside it, the recorder is complete
once it holds an observation, a proposal and a command for every step and a human action for every
intervened step (the queues of different topics drain in no fixed order, so the end message alone
does not say that everything before it has been received).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .topics import END_DISCARD, SOURCE_HOLD, SOURCE_HUMAN

__all__ = ["EpisodeStats", "episode_window"]


def episode_window(end_stamp: int, duration_s: float) -> tuple[int, int]:
    """``[start, end)`` of an episode's step stamps, with half a millisecond of rounding slack."""
    return end_stamp - round(duration_s * 1e9) - 500_000, end_stamp


@dataclass
class EpisodeStats:
    executed: dict[int, str] = field(default_factory=dict)  # stamp -> source of the first command
    observations: set[int] = field(default_factory=set)
    proposals: set[int] = field(default_factory=set)
    human_actions: set[int] = field(default_factory=set)
    success: bool = False
    end_reason: str = ""
    end_stamp: int | None = None  # the final observation's stamp: no command for it was executed
    end_steps: int | None = None
    duration_s: float | None = None

    def on_executed(self, stamp: int, source: str) -> None:
        self.executed.setdefault(stamp, source)  # a resend, or a late answer after a hold: the first counts

    def on_end(self, stamp: int, reason: str, values: dict[str, float]) -> None:
        self.end_stamp, self.end_reason = stamp, reason
        self.success = bool(values.get("success", 0.0))
        self.end_steps = int(values["steps"]) if "steps" in values else None
        self.duration_s = values.get("duration_s")

    def _in(self, stamps) -> list[int]:
        if self.end_stamp is None:
            return list(stamps)
        lo = episode_window(self.end_stamp, self.duration_s)[0] if self.duration_s is not None else -(2**63)
        return [s for s in stamps if lo <= s < self.end_stamp]

    def complete(self) -> bool:
        """Every step of the ended episode is here (False before the end message)."""
        if self.end_stamp is None or self.end_steps is None:
            return False
        steps = self._in(self.executed)
        humans = {s for s in steps if self.executed[s] == SOURCE_HUMAN}
        return (
            len(steps) >= self.end_steps
            and len(self._in(self.observations)) >= self.end_steps
            and len(self._in(self.proposals)) >= self.end_steps
            and humans <= self.human_actions
        )

    def as_dict(self) -> dict:
        stamps = self._in(self.executed)
        return {
            "steps": sum(self.executed[s] != SOURCE_HOLD for s in stamps),
            "interventions": sum(self.executed[s] == SOURCE_HUMAN for s in stamps),
            "held_steps": sum(self.executed[s] == SOURCE_HOLD for s in stamps),
            "bridge_steps": self.end_steps,
            "complete": self.complete(),
            "success": self.success,
            "end_reason": self.end_reason,
            "discarded": self.end_reason == END_DISCARD,
        }
