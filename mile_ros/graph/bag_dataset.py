"""Episode bags -> :class:`InterventionDataset`, joining each step by the observation's header stamp.

A step is the observation the policy acted on (``/mile/observation``), the policy's proposal
(``/mile/proposed_action``), the command arbitration executed (``/mile/executed_action``, whose
``frame_id`` says robot / human / hold) and, on intervened steps, the human's action
(``/mile/human_action``), all carrying the same stamp. Arrival order is never used. Steps that the
watchdog held, or that miss a part, are left out and counted.

Only complete episodes of the wanted modes are training data. Bags that cannot be read are reported
by name and skipped; a bag whose episode never ended (no sidecar, ``complete: false``, or set aside by
the session manager as ``*.interruptedN``) is reported and skipped; a complete bag whose file was
truncated afterwards contributes its complete steps. Episodes the operator discarded (``discarded`` in
the metadata, or an episode end with reason ``discard`` in the bag itself) are listed in the report and
never used or deleted. A bag whose values cannot be trained on (a NaN or infinite value, an action
outside the spec's range) is quarantined: moved to ``quarantine/`` beside it with a
``<name>.reason.txt`` that says why, and the rest are used.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mile_ros.learning import DatasetError, InterventionDataset, Spec

from .bag_episode import BagError, EpisodeBag, interrupted_by_name, read_bag
from .episode_stats import episode_window
from .topics import END_DISCARD, SOURCE_HOLD, SOURCE_HUMAN

__all__ = [
    "QUARANTINE",
    "BagDatasetError",
    "BuildReport",
    "EpisodeSteps",
    "build_dataset",
    "episode_steps",
    "find_bags",
    "quarantine_bag",
    "validate_steps",
]

# Each bag left out is logged here at INFO, named with the reason (the trainer node logs the report's
# ``skipped`` itself; ``mile-ros train`` shows this logger on stderr, also when training then fails).
log = logging.getLogger(__name__)

QUARANTINE = "quarantine"  # bags that cannot be trained on are moved to <bag's folder>/quarantine/
# Actions may pass their bounds by float rounding (float32 policies, the pad's scaling): this much
# of the range is allowed; anything further is bad data.
ACTION_TOLERANCE = 1e-3
# No sensor the graph records (positions in metres, joint angles, image embeddings, LunarLander's
# state) comes near this; a value beyond it is a broken message, and one such step makes training diverge.
OBSERVATION_LIMIT = 1e6


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
    """What :func:`build_dataset` made of the bags.

    ``skipped`` names every bag left out with the reason (unreadable, interrupted, quarantined);
    ``interrupted`` and ``quarantined`` (original path, where it went, why) list those kinds again.
    """

    dataset: InterventionDataset | None
    used: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    recovered: list[tuple[Path, str]] = field(default_factory=list)
    discarded: list[Path] = field(default_factory=list)
    interrupted: list[tuple[Path, str]] = field(default_factory=list)
    quarantined: list[tuple[Path, Path, str]] = field(default_factory=list)
    held_steps: int = 0
    incomplete_steps: int = 0

    def summary(self) -> str:
        rows = len(self.dataset) if self.dataset is not None else 0
        parts = [f"{rows} steps from {len(self.used)} bags"]
        if self.quarantined:
            parts.append(f"{len(self.quarantined)} quarantined")
        if self.interrupted:
            parts.append(f"{len(self.interrupted)} interrupted left out")
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
    ends = _first_by_stamp(bag, "/episode/end")
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


def find_bags(root: str | os.PathLike, include_quarantined: bool = False) -> list[Path]:
    """Episode bag directories under ``root`` (any depth), in name order.

    Quarantined bags are left out unless ``include_quarantined`` (their sidecars still say which
    episode they hold, e.g. for naming the iteration an update is for).
    """
    root = Path(root)
    if not root.is_dir():
        raise BagDatasetError(f"bag directory {root} does not exist")
    found = set()
    for p in root.rglob("*.mcap"):
        parts = p.parent.relative_to(root).parts
        if any(part.startswith(".") for part in parts):  # work in progress (a reindex)
            continue
        if QUARANTINE in parts and not include_quarantined:  # refused already
            continue
        found.add(p.parent)
    return sorted(found)


def validate_steps(steps: EpisodeSteps, spec: Spec) -> str | None:
    """Why these steps cannot be trained on (the first problem, with its step), or None."""
    n = len(steps.stamps)
    checks = [
        ("observation", steps.observation, np.ones(n, bool), False),
        ("robot action", steps.robot_action, np.ones(n, bool), True),
        ("human action", steps.human_action, steps.intervention, True),
    ]
    low = np.asarray(spec.action_low, np.float64) if spec.action_low is not None and not spec.discrete else None
    high = np.asarray(spec.action_high, np.float64) if spec.action_high is not None and not spec.discrete else None
    for name, values, rows, is_action in checks:
        values = np.asarray(values, np.float64)
        bad = rows & ~np.isfinite(values).all(1)
        if bad.any():
            return _first(steps, bad, f"{name} is NaN or infinite")
        if not is_action:
            huge = rows & (np.abs(values) > OBSERVATION_LIMIT).any(1)
            if huge.any():
                return _first(steps, huge, f"{name} has a value beyond ±{OBSERVATION_LIMIT:g}")
        if is_action and low is not None and high is not None:
            slack = ACTION_TOLERANCE * (high - low)
            outside = rows & ((values < low - slack) | (values > high + slack)).any(1)
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                return _first(
                    steps,
                    outside,
                    f"{name} {np.array2string(values[i], precision=4)} outside its range "
                    f"[{', '.join(f'{v:g}' for v in low)}] .. [{', '.join(f'{v:g}' for v in high)}]",
                )
    return None


def _first(steps: EpisodeSteps, rows: np.ndarray, what: str) -> str:
    i = int(np.flatnonzero(rows)[0])
    count = int(rows.sum())
    return f"step {i} (stamp {int(steps.stamps[i])} ns): {what}" + (f" ({count} steps in all)" if count > 1 else "")


def quarantine_bag(path: str | os.PathLike, reason: str) -> Path:
    """Move the bag folder ``path`` to ``quarantine/`` beside it, with ``<name>.reason.txt``; return where.

    Nothing is deleted: the reason file says where the bag came from and why it was moved; move the
    folder back once it is repaired.
    """
    path = Path(path)
    folder = path.parent / QUARANTINE
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    k = 0
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        k += 1
        target = folder / f"{path.name}.{k}"
    note = target.with_name(target.name + ".reason.txt")
    tmp = folder / f".{note.name}.tmp"
    when = time.strftime("%Y-%m-%d %H:%M:%S %z")
    tmp.write_text(f"bag: {path}\nquarantined: {when}\nreason: {reason}\n")
    os.replace(tmp, note)  # the reason first: a bag is never in quarantine without one
    path.rename(target)
    return target


def build_dataset(
    bags: Sequence[str | os.PathLike],
    spec: Spec | None = None,
    include_modes: Sequence[str] = ("train",),
    quarantine: bool = True,
) -> BuildReport:
    """Read ``bags`` and join them into one dataset; episode ids are the bags' positions in the list.

    Only complete episodes are used; bags whose metadata names another mode (``eval``) are left out
    unless listed in ``include_modes``. Without ``spec`` it is inferred (frame stack 3, actions in
    [-1, 1]). A complete bag whose values fail :func:`validate_steps` (or the dataset's own checks) is
    moved to quarantine (``quarantine=False``: only skipped) and named in the report.
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
        why_incomplete = _incomplete(path, bag)
        if why_incomplete:
            report.interrupted.append((path, why_incomplete))
            report.skipped.append((path, f"not trained on: {why_incomplete}"))
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
        problem = validate_steps(steps, spec)
        part = None
        if problem is None:
            try:
                part = InterventionDataset(
                    spec,
                    steps.observation,
                    steps.robot_action,
                    steps.intervention,
                    steps.human_action,
                    np.full(n, index),
                    np.arange(n),
                )
            except DatasetError as exc:  # a check of the dataset's own that validate_steps lacks
                problem = str(exc)
        if part is None:
            _set_aside(report, path, f"bad data: {problem}", quarantine)
            continue
        if not bag.complete:
            report.recovered.append((path, bag.note))
        report.held_steps += steps.held
        report.incomplete_steps += steps.incomplete
        parts.append(part)
        report.used.append(path)
    for path, why in report.skipped:
        log.info("%s: %s", path, why)
    if parts:
        report.dataset = InterventionDataset.concatenate(parts)
    return report


def _incomplete(path: Path, bag: EpisodeBag) -> str:
    """Why ``bag`` is not a complete episode ("" when it is)."""
    meta = bag.metadata
    if interrupted_by_name(path):
        return meta.get("interrupted") or "set aside by the session manager as an interrupted episode"
    if not meta:
        return "no episode metadata: the recorder stopped before the episode ended"
    if meta.get("interrupted"):
        reason = meta["interrupted"]
        return reason if isinstance(reason, str) else "the recorder was stopped before the episode ended"
    if meta.get("complete") is False:
        return "marked incomplete"
    return ""


def _set_aside(report: BuildReport, path: Path, reason: str, quarantine: bool) -> None:
    if not quarantine:
        report.skipped.append((path, reason))
        return
    try:
        target = quarantine_bag(path, reason)
    except OSError as exc:  # left in place, still never trained on
        report.skipped.append((path, f"{reason}; could not quarantine it: {exc}"))
        return
    report.quarantined.append((path, target, reason))
    report.skipped.append((path, f"{reason}; quarantined to {target}"))
