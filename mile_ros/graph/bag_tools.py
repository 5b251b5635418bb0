"""What each episode bag of a session holds and what is wrong with it, and the repairs the project knows.

Built on the project's own bag code rather than beside it: rosbags' ``Reader`` opens a closed bag
(topics, counts, duration), :func:`~mile_ros.graph.bag_episode.read_bag` reads a truncated one up to its
last complete message, :func:`~mile_ros.graph.bag_dataset.episode_steps` joins the steps exactly as the
trainer does and :func:`~mile_ros.graph.bag_dataset.validate_steps` checks their values. A repair is
:func:`~mile_ros.graph.bag_episode.mark_interrupted` for a bag whose recorder died (reindexed into a
closed rosbag2 bag, the original file kept as ``*.mcap.truncated``, marked ``complete: false`` so it is
never trained on), a sidecar rewritten from ``metadata.yaml``, and with ``quarantine=True``
:func:`~mile_ros.graph.bag_dataset.quarantine_bag` for bags that cannot be trained on. Nothing is deleted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mile_ros.learning import Spec

from .bag_dataset import QUARANTINE, _incomplete, episode_steps, find_bags, quarantine_bag, validate_steps
from .bag_episode import (
    METADATA,
    SIDECAR,
    TRUNCATED,
    BagError,
    _custom_data,
    episode_meta,
    interrupted_by_name,
    mark_interrupted,
    read_bag,
    write_sidecar,
)
from .topics import END_DISCARD, bag_topic

__all__ = ["BagInfo", "inspect_bag", "inspect_bags", "repair_bag"]

# Topics without which a bag holds no trainable step, and what their absence means.
REQUIRED = {
    "/mile/observation": "no observation",
    "/mile/proposed_action": "no robot proposal",
    "/mile/executed_action": "no executed command",
    "/episode/end": "no episode end (the episode's end was never recorded)",
}

# States, from the bag's point of view: ``ok`` can be trained on; the rest say why not.
OK, DISCARDED, INCOMPLETE, TRUNCATED_STATE, BAD_DATA, UNREADABLE, QUARANTINED = (
    "ok",
    "discarded",
    "incomplete",
    "truncated",
    "bad data",
    "unreadable",
    "quarantined",
)


@dataclass
class BagInfo:
    """One episode bag: what it holds (``None`` where it could not be read) and what is wrong with it."""

    path: Path
    state: str = OK
    mode: str = ""
    task: str = ""
    iteration: int | None = None
    episode: int | None = None
    steps: int | None = None
    interventions: int | None = None
    held_steps: int = 0
    incomplete_steps: int = 0
    success: bool | None = None
    end_reason: str = ""
    messages: int = 0
    duration_s: float | None = None
    topics: dict[str, int] = field(default_factory=dict)
    closed: bool = False  # rosbags opens it as a closed rosbag2 bag
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repair: str = ""  # what `repair` would do ("" nothing)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _rosbags_summary(path: Path) -> tuple[dict[str, int], int, float | None] | str:
    """(topic -> count, messages, duration) from rosbags' reader, or why it refuses the bag."""
    from rosbags.rosbag2 import Reader

    if not (path / METADATA).is_file():
        return "no metadata.yaml: the recorder stopped before closing the bag"
    try:
        with Reader(path) as reader:
            counts = {bag_topic(c.topic): 0 for c in reader.connections}  # root names, as read_bag's
            for c in reader.connections:
                counts[bag_topic(c.topic)] += int(c.msgcount)
            return counts, int(reader.message_count), reader.duration / 1e9 if reader.message_count else 0.0
    except Exception as exc:  # rosbags' errors for a broken bag are several types
        return f"rosbags cannot open it: {exc}"


def inspect_bag(path: str | os.PathLike) -> BagInfo:
    """Everything ``mile-ros bags info`` says about one episode bag folder."""
    path = Path(path)
    info = BagInfo(path)
    if QUARANTINE in path.parts:
        info.state = QUARANTINED
        reason = path.with_name(path.name + ".reason.txt")
        why = reason.read_text().strip().splitlines()[-1] if reason.is_file() else "no reason file"
        info.problems.append(f"quarantined ({why.removeprefix('reason: ')})")
    truncated = sorted(p.name for p in path.glob(f"*{TRUNCATED}*"))
    if truncated:
        info.notes.append(f"reindexed earlier; original kept as {', '.join(truncated)}")
    try:
        meta = episode_meta(path)
    except BagError as exc:
        info.problems.append(str(exc))
        info.repair = "rewrite the sidecar from metadata.yaml" if _custom_data(path) else ""
        meta = _custom_data(path)
    if meta and not (path / SIDECAR).is_file() and (path / METADATA).is_file():
        info.problems.append(f"no {SIDECAR} (the recorder stopped between metadata.yaml and the sidecar)")
        info.repair = info.repair or "write the sidecar from metadata.yaml"
    info.mode = str(meta.get("mode", ""))
    info.task = str(meta.get("task", ""))
    info.iteration = meta.get("iteration")
    info.episode = meta.get("episode")
    summary = _rosbags_summary(path)
    if isinstance(summary, str):
        info.problems.append(summary)
        info.state = TRUNCATED_STATE if info.state == OK else info.state
        info.repair = "reindex into a closed bag, keep the original file, mark the episode incomplete"
    else:
        info.topics, info.messages, info.duration_s = summary
        info.closed = True
    try:
        bag = read_bag(path)
    except BagError as exc:
        info.problems.append(str(exc))
        info.state = UNREADABLE if info.state != QUARANTINED else info.state
        info.repair = "none possible (quarantine it with --quarantine)" if info.state == UNREADABLE else ""
        return _settled(info)
    if not info.closed:
        for m in bag.messages:
            info.topics[m.topic] = info.topics.get(m.topic, 0) + 1
        info.messages = len(bag.messages)
        if bag.messages:
            info.duration_s = (bag.messages[-1].log_time_ns - bag.messages[0].log_time_ns) / 1e9
        if bag.note:
            info.notes.append(bag.note)
    counted = meta.get("message_counts") or {}
    for topic, n in sorted(counted.items()):
        topic = bag_topic(topic)  # the sidecar counts under the names recorded (a namespace's, an old one)
        if info.closed and info.topics.get(topic, 0) < int(n):
            info.problems.append(f"{topic}: the sidecar counts {n} messages, the bag holds {info.topics.get(topic, 0)}")
    why = _incomplete(path, bag)
    # A closed bag already marked as an episode that never ended is a known, handled state: a note.
    known = info.notes if why and info.closed else info.problems
    for topic, what in REQUIRED.items():
        if not info.topics.get(topic):
            known.append(f"missing {topic}: {what}")
    if why:
        known.append(f"not a complete episode, never trained on: {why}")
        if info.state == OK:
            info.state = INCOMPLETE
    if meta.get("steps_complete") is False:
        info.problems.append("the recorder did not receive every step of the episode")
    try:
        steps = episode_steps(bag)
    except Exception as exc:  # a message that does not decode
        info.problems.append(f"a message does not decode: {exc}")
        info.state = UNREADABLE if info.state in (OK, INCOMPLETE) else info.state
        return _settled(info)
    n = len(steps.stamps)
    info.steps, info.interventions = n, int(steps.intervention.sum())
    info.held_steps, info.incomplete_steps = steps.held, steps.incomplete
    info.end_reason = steps.end_reason or str(meta.get("end_reason", ""))
    if "success" in meta:
        info.success = bool(meta["success"])
    else:
        ends = bag.topic("/episode/end")
        if ends:
            end = ends[0].decode()
            info.success = bool(dict(zip(end.name, end.position)).get("success", 0.0))
    if steps.incomplete:
        info.problems.append(f"{steps.incomplete} steps lack a proposal, a command or the human's action")
    if "steps" in meta and meta["steps"] is not None and int(meta["steps"]) != n:
        info.problems.append(f"metadata says {meta['steps']} steps, the bag joins {n}")
    if n:
        d = steps.robot_action.shape[1]
        spec = Spec(steps.observation.shape[1], d, action_low=(-1.0,) * d, action_high=(1.0,) * d)
        problem = validate_steps(steps, spec)
        if problem:
            info.problems.append(f"bad data: {problem}")
            if info.state == OK:
                info.state = BAD_DATA
                info.repair = info.repair or "none (quarantine it with --quarantine)"
    elif info.state == OK:
        info.problems.append("no complete step")
        info.state = INCOMPLETE
    if info.state == OK and (meta.get("discarded") or info.end_reason == END_DISCARD):
        info.state = DISCARDED
    return _settled(info)


def _settled(info: BagInfo) -> BagInfo:
    """A quarantined bag's problems are why it is there: notes, nothing left to act on."""
    if info.state == QUARANTINED:
        info.notes[:0] = info.problems
        info.problems = []
        info.repair = ""
    return info


def inspect_bags(root: str | os.PathLike) -> list[BagInfo]:
    """Every episode bag under ``root`` (quarantined ones included), or ``root`` itself if it is one."""
    root = Path(root)
    if not root.exists():
        raise BagError(f"{root} does not exist")
    if any(root.glob("*.mcap")):
        return [inspect_bag(root)]
    return [inspect_bag(p) for p in find_bags(root, include_quarantined=True)]


def repair_bag(info: BagInfo, quarantine: bool = False, dry_run: bool = False) -> str:
    """Carry out ``info.repair``; returns what was done ("" nothing). Nothing is ever deleted."""
    path = info.path
    if info.state == QUARANTINED:
        return ""
    if not info.closed and info.state != UNREADABLE:
        reason = "repaired by mile-ros bags repair: the recorder stopped before closing the bag"
        if interrupted_by_name(path):
            reason = "interrupted"
        return "would " + info.repair if dry_run else mark_interrupted(path, {}, reason)
    if info.state in (BAD_DATA, UNREADABLE) and quarantine:
        why = next((p for p in info.problems if p.startswith("bad data")), "; ".join(info.problems))
        return f"would quarantine: {why}" if dry_run else f"quarantined to {quarantine_bag(path, why)}"
    if info.repair.startswith(("write the sidecar", "rewrite the sidecar")):
        if dry_run:
            return "would " + info.repair
        meta = _custom_data(path)
        write_sidecar(path, {**meta, "message_counts": info.topics, "sidecar_rewritten": "mile-ros bags repair"})
        return f"{SIDECAR} written from metadata.yaml"
    return ""


def to_json(infos: list[BagInfo]) -> str:
    return json.dumps([i.as_dict() for i in infos], indent=2)
