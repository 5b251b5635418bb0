"""Observation and action specification shared by datasets, checkpoints and the policy node."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Spec"]


@dataclass(frozen=True)
class Spec:
    """What a policy sees and does.

    ``obs_dim`` is one frame's size; the network sees ``frame_stack + 1`` frames (the previous
    ``frame_stack`` steps and the current one, oldest first). ``act_dim`` is the action vector's size
    for continuous actions and the number of actions when ``discrete``.
    """

    obs_dim: int
    act_dim: int
    discrete: bool = False
    frame_stack: int = 3
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    obs_source: str = "state"  # "state" (simulation) or "r3m+ee" (real robot: embedding + end effector)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.obs_dim <= 0 or self.act_dim <= 0 or self.frame_stack < 0:
            raise ValueError(f"invalid spec: {self}")
        for name in ("action_low", "action_high"):
            bound = getattr(self, name)
            if bound is not None:
                object.__setattr__(self, name, tuple(float(b) for b in bound))
                if not self.discrete and len(bound) != self.act_dim:
                    raise ValueError(f"{name} has {len(bound)} entries, act_dim is {self.act_dim}")

    @property
    def stacked_dim(self) -> int:
        """Input size of the networks."""
        return self.obs_dim * (self.frame_stack + 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action_low"] = list(self.action_low) if self.action_low is not None else None
        d["action_high"] = list(self.action_high) if self.action_high is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spec:
        return cls(**d)

    def describe_mismatch(self, other: Spec) -> str | None:
        """A sentence naming the first field that differs, or None when compatible."""
        for key in ("obs_dim", "act_dim", "discrete", "frame_stack", "obs_source"):
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine != theirs:
                return f"{key} is {theirs!r}, expected {mine!r}"
        return None
