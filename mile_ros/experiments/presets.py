"""Experiment presets: how much simulation and training each cell does.

``paper`` measures as the paper does (100 mental-model rollouts, 50 evaluation episodes). ``quick``
trains exactly as ``paper`` does (each method's settings for the task: ``baselines.method_config``)
and only measures less: 20 evaluation episodes, a smaller RLIF. ``smoke`` is for CI only: 100
epochs at 1e-3, so that something visibly changes in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "ExperimentPreset", "get_preset", "parse_method"]


@dataclass(frozen=True)
class ExperimentPreset:
    name: str
    eval_episodes: int = 50
    mental_rollouts: int = 100
    init_check_episodes: int = 20
    # per-method overrides of baselines.method_config(); "*" applies to every imitation method and MILE
    training: dict[str, dict[str, Any]] = field(default_factory=dict)

    def overrides(self, method: str) -> dict[str, Any]:
        out = dict(self.training.get("*", {})) if method != "rlif" else {}
        out.update(self.training.get(method, {}))
        return out


PRESETS: dict[str, ExperimentPreset] = {
    "paper": ExperimentPreset("paper"),
    "quick": ExperimentPreset(
        "quick",
        eval_episodes=20,
        mental_rollouts=100,
        init_check_episodes=20,
        training={"rlif": {"actor_updates": 300, "n_critics": 5}},
    ),
    "smoke": ExperimentPreset(
        "smoke",
        eval_episodes=10,
        mental_rollouts=10,
        init_check_episodes=10,
        training={
            "*": {"epochs": 100, "lr": 1e-3},
            "rlif": {"actor_updates": 100, "n_critics": 4},
        },
    ),
}


def get_preset(name: str) -> ExperimentPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``"mile@continuous_form=authors,learn_cost=true"`` -> ``("mile", {...})``.

    A bare word names a variant of the method's defaults (``"mile@paper,lr=1e-4"``: the authors'
    MILE at another rate); it is returned as ``variant`` (:func:`mile_ros.baselines.parse_options`).
    """
    from mile_ros.baselines import parse_options

    name, _, rest = spec.partition("@")
    try:
        return name, parse_options(rest)
    except ValueError as exc:
        raise ValueError(f"{exc} (method {spec!r})") from None
