"""Episode bags -> :class:`InterventionDataset`, joining each step by the observation's header stamp.

A step is the observation the policy acted on (``/mile/observation``), the policy's proposal
(``/mile/proposed_action``), the command arbitration executed (``/mile/executed_action``, whose
``frame_id`` says robot / human / hold) and, on intervened steps, the human's action
(``/mile/human_action``), all carrying the same stamp. Arrival order is never used. Steps that the
watchdog held, or that miss a part, are left out and counted. Bags that cannot be read are
reported by name and skipped; truncated bags contribute their complete steps. Episodes the operator
discarded (``discarded`` in the metadata, or an episode end with reason ``discard`` in the bag itself,
which a bag whose recorder died still holds) are listed in the report and never used or deleted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mile_ros.learning import InterventionDataset, Spec

from .bag_episode import BagError, EpisodeBag, read_bag
from .episode_stats import episode_window
from .topics import END_DISCARD, SOURCE_HOLD, SOURCE_HUMAN

__all__ = ["BagDatasetError", "BuildReport", "EpisodeSteps", "build_dataset", "episode_steps", "find_bags"]


class BagDatasetError(ValueError):
    """No usable step in any bag, or bags that disagree with the spec."""


@dataclass
class EpisodeSteps:
    """One episode's joined steps, in stamp order."""

    stamps: np.ndarray  # int64 ns
    observation: np.ndarray
    robot_action: np.ndarray
    executed_action: np.ndarray
    intervention: np.ndarray
    human_action: np.ndarray  # NaN where not intervened
    held: int = 0  # steps the watchdog held (not part of the record)
    incomplete: int = 0  # observations without proposal or executed command
    end_reason: str = ""  # frame_id of the episode's end message ("" when the bag has none)


@dataclass
class BuildReport:
    dataset: InterventionDataset | None
    used: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    recovered: list[tuple[Path, str]] = field(default_factory=list)
    discarded: list[Path] = field(default_factory=list)
    held_steps: int = 0
    incomplete_steps: int = 0

    def summary(self) -> str:
        rows = len(self.dataset) if self.dataset is not None else 0
        parts = [f"{rows} steps from {len(self.used)} bags"]
        if self.recovered:
            parts.append(f"{len(self.recovered)} recovered from truncated bags")
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)}: " + "; ".join(f"{p.name} ({why})" for p, why in self.skipped))
        if self.discarded:
            parts.append(f"{len(self.discarded)} discarded by the operator left out")
        if self.held_steps:
            parts.append(f"{self.held_steps} held steps left out")
        if self.incomplete_steps:
            parts.append(f"{self.incomplete_steps} incomplete steps left out")
        return ", ".join(parts)


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _first_by_stamp(bag: EpisodeBag, topic: str) -> dict[int, object]:
    """Messages of ``topic`` by stamp, the first one per stamp (lockstep resends repeat a stamp)."""
    out: dict[int, object] = {}
    for m in bag.topic(topic):
        msg = m.decode()
        out.setdefault(_stamp(msg), msg)
    return out


def episode_steps(bag: EpisodeBag) -> EpisodeSteps:
    """Join one bag's step topics by stamp."""
    obs = _first_by_stamp(bag, "/mile/observation")
    prop = _first_by_stamp(bag, "/mile/proposed_action")
    # The first command per stamp is what the robot executed; a hold sent first by the watchdog wins.
    executed_any = _first_by_stamp(bag, "/mile/executed_action")
    executed = {s: m for s, m in executed_any.items() if m.header.frame_id != SOURCE_HOLD}
    human = _first_by_stamp(bag, "/mile/human_action")
    # The bridge publishes the final observation with the episode's end; its command never ran.
    # Stamps outside the episode's window are late messages of the previous episode.
    ends = _first_by_stamp(bag, "/sim/episode_end")
    start, end, reason = -(2**63), 2**63, ""
    if ends:
        end = min(ends)
        reason = ends[end].header.frame_id
        values = dict(zip(ends[end].name, ends[end].position))
        if "duration_s" in values:
            start = episode_window(end, float(values["duration_s"]))[0]
    rows, held, incomplete = [], 0, 0
    for stamp in sorted(obs):
        if not start <= stamp < end:
            continue
        if stamp not in executed:
            held += stamp in executed_any
            incomplete += stamp not in executed_any
            continue
        if stamp not in prop:
            incomplete += 1
            continue
        ex = executed[stamp]
        intervened = ex.header.frame_id == SOURCE_HUMAN
        if intervened and stamp not in human:
            incomplete += 1
            continue
        h = np.asarray(human[stamp].position, dtype=np.float64) if intervened else None
        rows.append(
            (
                stamp,
                np.asarray(obs[stamp].position),
                np.asarray(prop[stamp].position),
                np.asarray(ex.position),
                intervened,
                h,
            )
        )
    if not rows:
        return EpisodeSteps(
            np.zeros(0, np.int64),
            np.zeros((0, 0)),
            np.zeros((0, 0)),
            np.zeros((0, 0)),
            np.zeros(0, bool),
            np.zeros((0, 0)),
            held,
            incomplete,
            reason,
        )
    act_dim = len(rows[0][2])
    return EpisodeSteps(
        np.array([r[0] for r in rows], np.int64),
        np.stack([r[1] for r in rows]),
        np.stack([r[2] for r in rows]),
        np.stack([r[3] for r in rows]),
        np.array([r[4] for r in rows], bool),
        np.stack([r[5] if r[5] is not None else np.full(act_dim, np.nan) for r in rows]),
        held,
        incomplete,
        reason,
    )


def find_bags(root: str | os.PathLike) -> list[Path]:
    """Episode bag directories under ``root`` (any depth), in name order."""
    root = Path(root)
    if not root.is_dir():
        raise BagDatasetError(f"bag directory {root} does not exist")
    found = {p.parent for p in root.rglob("*.mcap")}
    return sorted(found)


def build_dataset(
    bags: Sequence[str | os.PathLike], spec: Spec | None = None, include_modes: Sequence[str] = ("train",)
) -> BuildReport:
    """Read ``bags`` and join them into one dataset; episode ids are the bags' positions in the list.

    Bags whose sidecar names another mode (``eval``) are skipped unless listed in ``include_modes``.
    Without ``spec`` it is inferred (frame stack 3, actions in [-1, 1]).
    """
    report = BuildReport(None)
    parts: list[InterventionDataset] = []
    for index, path in enumerate(bags):
        path = Path(path)
        try:
            bag = read_bag(path)
        except (BagError, OSError, ValueError) as exc:
            report.skipped.append((path, str(exc)))
            continue
        mode = bag.metadata.get("mode", "train")
        if mode not in include_modes:
            continue
        try:
            steps = episode_steps(bag)
        except Exception as exc:  # a message that does not decode: the bag is corrupt
            report.skipped.append((path, f"unreadable message: {exc}"))
            continue
        if bag.metadata.get("discarded") or steps.end_reason == END_DISCARD:
            report.discarded.append(path)
            continue
        if not bag.complete:
            report.recovered.append((path, bag.note))
        report.held_steps += steps.held
        report.incomplete_steps += steps.incomplete
        if len(steps.stamps) == 0:
            report.skipped.append((path, "no complete step"))
            continue
        if spec is None:
            d = steps.robot_action.shape[1]
            spec = Spec(steps.observation.shape[1], d, action_low=(-1.0,) * d, action_high=(1.0,) * d)
        if steps.observation.shape[1] != spec.obs_dim or steps.robot_action.shape[1] != spec.act_dim:
            report.skipped.append(
                (
                    path,
                    f"observation/action sizes {steps.observation.shape[1]}/"
                    f"{steps.robot_action.shape[1]} do not fit spec {spec.obs_dim}/{spec.act_dim}",
                )
            )
            continue
        n = len(steps.stamps)
        parts.append(
            InterventionDataset(
                spec,
                steps.observation,
                steps.robot_action,
                steps.intervention,
                steps.human_action,
                np.full(n, index),
                np.arange(n),
            )
        )
        report.used.append(path)
    if parts:
        report.dataset = InterventionDataset.concatenate(parts)
    return report
