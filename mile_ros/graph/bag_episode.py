"""One rosbag2 (MCAP) per episode: writing serialized messages as they arrive, and reading them back.

The writer is rosbags' MCAP writer. rosbags buffers messages in 1 MiB chunks in memory and writes
them only when a chunk fills or the bag closes, so a killed recorder would lose the whole pending
chunk; :meth:`EpisodeBagWriter.write` therefore closes the chunk after every ``flush_every`` messages
and flushes it to the file. A recorder killed mid-episode leaves an MCAP without summary and without
``metadata.yaml``; :func:`read_bag` then scans the file record by record and returns every message
up to the last complete one (rosbags itself refuses such a bag).

Session metadata (iteration, episode, success, interventions, checkpoint) goes into the bag's
``metadata.yaml`` ``custom_data`` and into a sidecar ``episode.json`` next to it; ``complete`` says
whether the episode was recorded to its end. :func:`mark_interrupted` turns the bag of an episode that
never ended into a real rosbag2 bag (the recovered messages rewritten with rosbags' writer, the
original file kept beside it as ``*.mcap.truncated``) marked ``complete: false`` with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mile_ros.graph.topics import bag_topic

__all__ = [
    "INTERRUPTED",
    "BagError",
    "BagMessage",
    "EpisodeBag",
    "EpisodeBagWriter",
    "decode",
    "interrupted_by_name",
    "mark_interrupted",
    "read_bag",
    "typestore",
]

SIDECAR = "episode.json"
METADATA = "metadata.yaml"
INTERRUPTED = ".interrupted"  # the session manager renames a bag left by a crash to <bag>.interruptedN
TRUNCATED = ".truncated"  # the original file of a reindexed bag: <file>.mcap.truncated (no longer *.mcap)
MCAP_MAGIC = b"\x89MCAP0\r\n"
_TYPESTORE = None


class BagError(RuntimeError):
    """A bag that cannot be read at all (not MCAP, no messages, unreadable)."""


def typestore():
    """The ROS 2 Kilted message definitions (shared, built once)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def decode(raw: bytes | memoryview, msgtype: str) -> Any:
    """CDR -> rosbags message, tolerating the padding rclpy adds after empty arrays (platform notes)."""
    raw = bytes(raw)
    if len(raw) < 4 or raw[:2] not in (b"\x00\x00", b"\x00\x01"):
        raise BagError(f"{msgtype}: not a CDR message")
    msgdef = typestore().get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    message, pos = func(raw[4:], 0, msgdef.cls, typestore())
    if pos + 4 > len(raw):
        raise BagError(f"{msgtype}: message truncated")
    return message


class EpisodeBagWriter:
    """Write one episode; ``close(metadata)`` finishes the bag and its sidecar."""

    def __init__(self, path: str | os.PathLike, topics: dict[str, str], flush_every: int = 1) -> None:
        """``topics`` maps topic name -> ROS 2 type; the directory ``path`` must not exist yet.

        The names are written as given, made absolute (the recorder gives the names it subscribed to,
        with its namespace); :meth:`write` also takes any other form of the same topic (relative, root)."""
        self.path = Path(path)
        self.writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        topics = {name if name.startswith("/") else "/" + name: msgtype for name, msgtype in topics.items()}
        self.connections = {
            name: self.writer.add_connection(name, msgtype, typestore=typestore()) for name, msgtype in topics.items()
        }
        self.flush_every = max(1, int(flush_every))
        self.counts = dict.fromkeys(topics, 0)
        self._as_recorded = {bag_topic(name): name for name in topics}
        self._since_flush = 0
        self.closed = False

    def write(self, topic: str, data: bytes | memoryview, log_time_ns: int) -> None:
        if topic not in self.connections:
            topic = self._as_recorded[bag_topic(topic)]
        self.writer.write(self.connections[topic], int(log_time_ns), bytes(data))
        self.counts[topic] += 1
        self._since_flush += 1
        if self._since_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Put every message written so far into the file (a killed process keeps them)."""
        storage = self.writer.storage
        # close_chunk/bio are rosbags' McapWriter internals; without them we fall back to its buffering.
        if hasattr(storage, "close_chunk") and storage.chunk.bio.tell():
            storage.close_chunk()
            storage.bio.flush()
        self._since_flush = 0

    def close(self, metadata: dict[str, Any], complete: bool = True) -> Path:
        """Finish the bag (summary, metadata.yaml with ``custom_data``) and write the sidecar JSON.

        ``complete=False``: the episode did not run to its end (the recorder was stopped mid-episode);
        the dataset builder never trains on such a bag.
        """
        if self.closed:
            return self.path
        metadata = dict(metadata)
        if "complete" in metadata:  # the recorder's "every step arrived", kept under its own name
            metadata["steps_complete"] = metadata.pop("complete")
        metadata["complete"] = bool(complete)
        for key, value in metadata.items():
            self.writer.set_custom_data(f"mile.{key}", json.dumps(value))
        self.writer.close()
        self.closed = True
        write_sidecar(self.path, {**metadata, "message_counts": self.counts})
        return self.path


def write_sidecar(bag_dir: Path, data: dict[str, Any]) -> None:
    tmp = bag_dir / f".{SIDECAR}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, bag_dir / SIDECAR)


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes

    def decode(self) -> Any:
        return decode(self.data, self.msgtype)


@dataclass
class EpisodeBag:
    """A bag's messages, each under its root topic name (:func:`~mile_ros.graph.topics.bag_topic`:
    ``/mile/observation`` whichever namespace it was recorded in, today's name for a renamed one)."""

    path: Path
    messages: list[BagMessage]
    metadata: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # False: recovered from a bag whose recorder died
    note: str = ""

    def topic(self, name: str) -> list[BagMessage]:
        """The messages of a topic, named in any form (``mile/observation``, an earlier name)."""
        name = bag_topic(name)
        return [m for m in self.messages if m.topic == name]


def read_bag(path: str | os.PathLike) -> EpisodeBag:
    """Read an episode bag; a truncated one is read up to its last complete message."""
    path = Path(path)
    if not path.is_dir():
        raise BagError(f"bag {path} does not exist or is not a directory")
    meta = episode_meta(path)
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise BagError(f"bag {path} has no .mcap file")
    if (path / METADATA).is_file():
        try:
            return EpisodeBag(path, _root_names(_read_complete(path)), meta, True)
        except Exception as exc:  # fall through to the record scan, which says what is wrong
            note = f"rosbags could not open it ({exc}); scanned records instead"
    else:
        note = "no metadata.yaml (recorder stopped before closing); scanned records"
    messages, complete_scan, _ = _scan_mcap(files[0])
    if not messages:
        raise BagError(f"bag {path} holds no readable message ({note})")
    note += "" if complete_scan else "; file ends mid-record"
    return EpisodeBag(path, _root_names(messages), meta, False, note)


def _root_names(messages: Iterable[BagMessage]) -> list[BagMessage]:
    names: dict[str, str] = {}
    out = []
    for m in messages:
        if m.topic not in names:
            names[m.topic] = bag_topic(m.topic)
        m.topic = names[m.topic]
        out.append(m)
    return out


def episode_meta(path: str | os.PathLike) -> dict[str, Any]:
    """A bag's episode metadata without reading its messages: the sidecar, else metadata.yaml's.

    The sidecar is written just after metadata.yaml, so a crash between the two leaves only the
    latter; neither gives {}. A corrupt sidecar raises :class:`BagError`.
    """
    path = Path(path)
    sidecar = path / SIDECAR
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BagError(f"bag {path}: sidecar {SIDECAR} is corrupt: {exc}") from exc
        if not isinstance(meta, dict):
            raise BagError(f"bag {path}: sidecar {SIDECAR} is not a JSON object")
        return meta
    if (path / METADATA).is_file():
        return _custom_data(path)
    return {}


def _read_complete(path: Path) -> Iterable[BagMessage]:
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        for conn, timestamp, data in reader.messages():
            yield BagMessage(conn.topic, conn.msgtype, timestamp, bytes(data))


def _custom_data(path: Path) -> dict[str, Any]:
    """The ``mile.*`` entries of a bag's metadata.yaml ``custom_data`` ({} when unreadable)."""
    try:
        info = yaml.safe_load((path / METADATA).read_text())["rosbag2_bagfile_information"]
        custom = info.get("custom_data") or {}
        return {k.removeprefix("mile."): json.loads(v) for k, v in custom.items() if k.startswith("mile.")}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, json.JSONDecodeError):
        return {}


def interrupted_by_name(path: str | os.PathLike) -> bool:
    """A bag folder the session manager set aside as ``<bag>.interruptedN``."""
    name = Path(path).name
    head, sep, tail = name.rpartition(INTERRUPTED)
    return bool(sep and head and tail.isdigit())


# ---- an episode that never ended -------------------------------------------------------------------


def mark_interrupted(path: str | os.PathLike, metadata: dict[str, Any], reason: str) -> str:
    """Mark the bag at ``path`` as an episode that never ended, and make it a real rosbag2 bag.

    The sidecar (written first, so a crash here still leaves the mark) gets ``metadata`` under what
    the bag already says, ``complete: false`` and ``interrupted: reason``. A bag without a readable
    ``metadata.yaml`` (its recorder was killed) is reindexed: every complete message is rewritten with
    rosbags' writer and the original file is kept as ``<file>.mcap.truncated``; a closed bag only gets
    the mark in its ``custom_data``. Returns what was done; raises :class:`BagError` when the file holds
    nothing to reindex (the sidecar's mark is in place even then).
    """
    path = Path(path)
    meta: dict[str, Any] = {}
    if (path / SIDECAR).is_file():
        try:
            meta = json.loads((path / SIDECAR).read_text())
        except json.JSONDecodeError:
            meta = {}  # replaced below; the recorded facts it held are in the bag's messages
    elif (path / METADATA).is_file():
        meta = _custom_data(path)
    meta = {**metadata, **meta, "complete": False, "interrupted": reason}
    write_sidecar(path, meta)
    if _opens(path):
        _set_custom_data(path, meta)
        return "closed bag marked incomplete"
    counts, note = _reindex(path, meta)
    write_sidecar(path, {**meta, "message_counts": counts, "reindexed": note})
    return note


def _opens(path: Path) -> bool:
    from rosbags.rosbag2 import Reader

    if not (path / METADATA).is_file():
        return False
    try:
        with Reader(path):
            return True
    except Exception:  # rosbags' own errors for a broken bag: reindex it instead
        return False


def _set_custom_data(path: Path, meta: dict[str, Any]) -> None:
    doc = yaml.safe_load((path / METADATA).read_text())
    info = doc["rosbag2_bagfile_information"]
    info["custom_data"] = {**(info.get("custom_data") or {}), **{f"mile.{k}": json.dumps(v) for k, v in meta.items()}}
    tmp = path / f".{METADATA}.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path / METADATA)


def _reindex(path: Path, meta: dict[str, Any]) -> tuple[dict[str, int], str]:
    """Rewrite a bag whose recorder died as a closed rosbag2 bag; keep the original file aside."""
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise BagError(f"bag {path} has no .mcap file to reindex")
    messages, complete_scan, channels = _scan_mcap(files[0])
    # The new bag is written under a hidden sibling with the bag's own name, so that the file name
    # in its metadata.yaml is the one it will have in the bag's folder.
    work = path.parent / f".{path.name}.reindex"
    shutil.rmtree(work, ignore_errors=True)  # a reindex that died half-way
    writer = Writer(work / path.name, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conns = {}
        for topic, msgtype in channels:
            if topic not in conns:
                try:
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=typestore())
                except Exception as exc:  # a type the Kilted store does not know
                    raise BagError(f"bag {path}: cannot reindex topic {topic} ({msgtype}): {exc}") from exc
        counts = dict.fromkeys(conns, 0)
        for m in messages:
            writer.write(conns[m.topic], m.log_time_ns, m.data)
            counts[m.topic] += 1
        for key, value in meta.items():
            writer.set_custom_data(f"mile.{key}", json.dumps(value))
        writer.close()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # the original bag is untouched so far
        raise
    new_file = next((work / path.name).glob("*.mcap"))
    for old in files:  # kept, under a name no reader takes for the bag's data
        target = old.with_name(old.name + TRUNCATED)
        k = 0
        while target.exists():
            k += 1
            target = old.with_name(f"{old.name}{TRUNCATED}{k}")
        old.rename(target)
    new_file.rename(path / new_file.name)
    # metadata.yaml last: until it is there the folder reads as a bag to scan, as before.
    (work / path.name / METADATA).rename(path / METADATA)
    shutil.rmtree(work, ignore_errors=True)
    note = (
        f"reindexed: {len(messages)} messages recovered"
        + ("" if complete_scan else ", the file ended mid-record")
        + f"; original kept as {files[0].name}{TRUNCATED}"
    )
    return counts, note


# ---- a tolerant MCAP record scanner ----------------------------------------------------------------


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise struct.error("string beyond record")
    return buf[pos + 4 : end].decode(), end


def _records(buf: bytes, pos: int) -> Iterable[tuple[int, bytes, bool]]:
    """(opcode, body, ok) for each complete record; the last item has ok=False if the data ends early."""
    while pos < len(buf):
        if pos + 9 > len(buf):
            yield 0, b"", False
            return
        op = buf[pos]
        (size,) = struct.unpack_from("<Q", buf, pos + 1)
        if pos + 9 + size > len(buf):
            yield 0, b"", False
            return
        yield op, buf[pos + 9 : pos + 9 + size], True
        pos += 9 + size


def _scan_mcap(file: Path) -> tuple[list[BagMessage], bool, list[tuple[str, str]]]:
    """(messages by log time, whether the file ended on a record boundary, channels' (topic, type))."""
    buf = file.read_bytes()
    if not buf.startswith(MCAP_MAGIC):
        raise BagError(f"{file} is not an MCAP file")
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    out: list[BagMessage] = []

    def handle(op: int, body: bytes) -> None:
        if op == 0x03:  # schema: id, name, encoding, data
            (sid,) = struct.unpack_from("<H", body, 0)
            schemas[sid], _ = _string(body, 2)
        elif op == 0x04:  # channel: id, schema id, topic, ...
            cid, sid = struct.unpack_from("<HH", body, 0)
            topic, _ = _string(body, 4)
            channels[cid] = (topic, schemas.get(sid, ""))
        elif op == 0x05:  # message: channel, sequence, log time, publish time, data
            cid, _, log_time = struct.unpack_from("<HIQ", body, 0)
            if cid in channels:
                topic, msgtype = channels[cid]
                out.append(BagMessage(topic, msgtype, log_time, body[22:]))

    complete = True
    for op, body, ok in _records(buf, len(MCAP_MAGIC)):
        if not ok:
            complete = False
            break
        if op == 0x06:  # chunk: start, end, uncompressed size, crc, compression, records
            try:
                compression, pos = _string(body, 28)
                (length,) = struct.unpack_from("<Q", body, pos)
            except struct.error:
                complete = False
                break
            if compression:
                raise BagError(f"{file}: compressed chunks ({compression}) are not recoverable here")
            inner = body[pos + 8 : pos + 8 + length]
            for iop, ibody, iok in _records(inner, 0):
                if iok:
                    handle(iop, ibody)
        elif op == 0x02:  # footer: end of data
            break
        else:
            handle(op, body)
    out.sort(key=lambda m: m.log_time_ns)
    return out, complete, [channels[c] for c in sorted(channels)]
