"""Running counts of one episode as the recorder sees it: steps, interventions, success."""

from __future__ import annotations

from dataclasses import dataclass, field

from .topics import SOURCE_HOLD, SOURCE_HUMAN

__all__ = ["EpisodeStats"]


@dataclass
class EpisodeStats:
    step_stamps: set[int] = field(default_factory=set)
    human_stamps: set[int] = field(default_factory=set)
    held: int = 0
    success: bool = False
    end_reason: str = ""
    end_stamp: int | None = None  # the final observation's stamp: no command for it was executed

    def on_executed(self, stamp: int, source: str) -> None:
        if source == SOURCE_HOLD:
            self.held += 1
            return
        if stamp in self.step_stamps:
            return  # a resend, or a late answer after a hold: the first one counted
        self.step_stamps.add(stamp)
        if source == SOURCE_HUMAN:
            self.human_stamps.add(stamp)

    def as_dict(self) -> dict:
        end = self.end_stamp if self.end_stamp is not None else 2**63

        return {
            "steps": sum(s < end for s in self.step_stamps),
            "interventions": sum(s < end for s in self.human_stamps),
            "held_commands": self.held,
            "success": self.success,
            "end_reason": self.end_reason,
        }
