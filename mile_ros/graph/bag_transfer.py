"""Finished episode bags from the recorder's host to a trainer on another host, over ROS 2 (no rclpy here).

The recorder offers what it has finished (:class:`BagOffer`): a catalogue of bag folders, each file with
its size and SHA-256, and any byte range of those files. A mirror on the trainer's host
(:class:`BagMirror`) copies every offered bag it does not have into its own bags folder, chunk by chunk:

- a file is downloaded into ``<bags>/.mirror/incoming/<bag>/<file>.part`` and continued from its length
  after a restart (resumable by offset), checked against the offered SHA-256, and only then named;
- a bag appears in the trainer's folder whole, by one ``rename`` of its staged folder, so a trainer never
  sees half a bag (and ``find_bags`` skips the dot folder meanwhile);
- nothing is ever overwritten: a bag already in the folder with other contents is a conflict, reported
  and left as it is; ``.mirror/ledger.json`` remembers what was mirrored, so a bag the trainer moved
  since (to ``quarantine/``) is not fetched again, across restarts.

The wire format is two standard messages, so nothing needs a generated interface package: a request is
a JSON ``std_msgs/String``; a reply is a ``std_msgs/UInt8MultiArray`` whose bytes are one JSON line
(the answer's metadata) followed by the chunk's bytes (:func:`pack_reply`, :func:`unpack_reply`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "CHUNK_BYTES",
    "MAX_CHUNK_BYTES",
    "BagMirror",
    "BagOffer",
    "MirrorReport",
    "OfferedBag",
    "OfferedFile",
    "TransferError",
    "pack_reply",
    "unpack_reply",
]

CHUNK_BYTES = 256 * 1024  # per reply: a few DDS fragments, small enough to resend cheaply
MAX_CHUNK_BYTES = 4 * 1024 * 1024  # the most the offer sends in one reply, whatever is asked
MIRROR_DIR = ".mirror"  # under the mirror's bags folder; dot folders are skipped by find_bags
SIDECAR = "episode.json"  # written last when a bag closes (mile_ros.graph.bag_episode)
METADATA = "metadata.yaml"


class TransferError(RuntimeError):
    """A request the offer refuses, or a file that does not arrive intact."""


@dataclass(frozen=True)
class OfferedFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class OfferedBag:
    bag: str  # the folder relative to the bags root, POSIX separators, e.g. iter_000/train_000
    files: tuple[OfferedFile, ...]

    def as_json(self) -> dict[str, Any]:
        return {"bag": self.bag, "files": [[f.name, f.size, f.sha256] for f in self.files]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OfferedBag:
        bag = _relative(str(data["bag"]))
        files = tuple(OfferedFile(_file_name(str(n)), int(s), str(h)) for n, s, h in data["files"])
        return cls(bag, files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _relative(bag: str) -> str:
    """A bag's relative folder, refused if it could lead outside the root (absolute, ``..``, dots)."""
    parts = PurePosixPath(bag).parts
    if not parts or bag.startswith("/") or "\\" in bag or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise TransferError(f"not a bag folder name: {bag!r}")
    return "/".join(parts)


def _file_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise TransferError(f"not a bag file name: {name!r}")
    return name


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def pack_reply(meta: dict[str, Any], payload: bytes = b"") -> bytes:
    """One JSON line (no raw newline: ``json.dumps`` escapes them) and the payload's bytes."""
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + payload


def unpack_reply(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, sep, payload = bytes(data).partition(b"\n")
    if not sep:
        raise TransferError("malformed reply: no metadata line")
    return json.loads(head), payload


class BagOffer:
    """The recorder's side: the finished bags under ``root`` and their bytes, nothing else.

    A bag is finished once its sidecar ``episode.json`` exists (written after the MCAP is closed) and
    it is not the one being recorded (``busy``). Paths are confined to ``root``: a request naming a
    folder or file outside it, a symlink, or a dot name is refused.
    """

    def __init__(self, root: str | os.PathLike, busy: Callable[[], Path | None] = lambda: None) -> None:
        self.root = Path(root).resolve()
        self.busy = busy
        self._hashes: dict[Path, tuple[int, int, str]] = {}  # path -> (size, mtime_ns, sha256)

    def _bag_dir(self, bag: str) -> Path:
        path = self.root / _relative(bag)
        resolved = path.resolve()
        if resolved != path or not resolved.is_relative_to(self.root):
            raise TransferError(f"{bag!r} is outside the offered folder")
        if not (path / SIDECAR).is_file():
            raise TransferError(f"{bag!r} is not a finished bag")
        current = self.busy()
        if current is not None and Path(current).resolve() == resolved:
            raise TransferError(f"{bag!r} is being recorded")
        return path

    def _file(self, path: Path) -> OfferedFile:
        st = path.lstat()
        cached = self._hashes.get(path)
        if cached is None or cached[:2] != (st.st_size, st.st_mtime_ns):
            cached = (st.st_size, st.st_mtime_ns, sha256_file(path))
            self._hashes[path] = cached
        return OfferedFile(path.name, st.st_size, cached[2])

    def describe(self, bag: str) -> OfferedBag:
        path = self._bag_dir(bag)
        files = []
        for entry in sorted(path.iterdir()):
            # Plain files only: sub-folders, links and hidden temporaries stay where they are.
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_file():
                continue
            files.append(self._file(entry))
        return OfferedBag(_relative(path.relative_to(self.root).as_posix()), tuple(files))

    def catalog(self) -> list[OfferedBag]:
        """Every finished bag, in name order."""
        found = []
        if not self.root.is_dir():
            return found
        for here, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # never into work in progress
            if SIDECAR not in names or here == str(self.root):
                continue
            rel = Path(here).relative_to(self.root).as_posix()
            try:
                found.append(self.describe(rel))
            except (TransferError, OSError):
                continue  # being recorded, or gone meanwhile
        return sorted(found, key=lambda b: b.bag)

    def chunk(self, bag: str, name: str, offset: int, length: int) -> tuple[OfferedFile, bytes]:
        """``length`` bytes (at most MAX_CHUNK_BYTES) of a finished bag's file from ``offset``."""
        path = self._bag_dir(bag) / _file_name(name)
        if path.is_symlink() or not path.is_file():
            raise TransferError(f"{bag}/{name} is not a file of the bag")
        info = self._file(path)
        if not 0 <= offset <= info.size:
            raise TransferError(f"offset {offset} outside {bag}/{name} ({info.size} bytes)")
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(max(0, min(int(length), MAX_CHUNK_BYTES)))
        return info, data

    def answer(self, request: dict[str, Any]) -> bytes:
        """The packed reply to one request (``op``: ``list`` or ``chunk``); errors are answered too."""
        meta: dict[str, Any] = {"client": request.get("client"), "id": request.get("id")}
        try:
            op = request.get("op")
            if op == "list":
                return pack_reply({**meta, "bags": [b.as_json() for b in self.catalog()]})
            if op == "chunk":
                info, data = self.chunk(
                    str(request["bag"]), str(request["file"]), int(request["offset"]), int(request["length"])
                )
                reply = {**meta, "bag": request["bag"], "file": info.name, "offset": int(request["offset"])}
                return pack_reply({**reply, "size": info.size, "sha256": info.sha256}, data)
            raise TransferError(f"unknown op {op!r}")
        except (TransferError, KeyError, ValueError, TypeError, OSError) as exc:
            return pack_reply({**meta, "error": f"{type(exc).__name__}: {exc}"})


# fetch(bag, file, offset, length) -> (file's size, file's sha256, bytes): one chunk from the offer.
Fetch = Callable[[str, str, int, int], tuple[int, str, bytes]]


@dataclass
class MirrorReport:
    fetched: list[str] = field(default_factory=list)  # bags copied now
    present: list[str] = field(default_factory=list)  # already here, identical (adopted into the ledger)
    conflicts: list[str] = field(default_factory=list)  # here with other contents: left alone
    bytes: int = 0  # downloaded now
    resumed_bytes: int = 0  # found in .part files from before and kept

    def summary(self) -> str:
        text = f"{len(self.fetched)} bag(s) fetched ({self.bytes} bytes"
        if self.resumed_bytes:
            text += f", {self.resumed_bytes} resumed from before"
        text += ")"
        if self.present:
            text += f", {len(self.present)} already here"
        if self.conflicts:
            text += f", {len(self.conflicts)} conflict(s): " + "; ".join(self.conflicts)
        return text


class BagMirror:
    """The trainer's side: make ``root`` hold every offered bag, verified, never overwriting."""

    def __init__(self, root: str | os.PathLike, fetch: Fetch, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.root = Path(root)
        self.fetch = fetch
        self.chunk_bytes = max(1, min(int(chunk_bytes), MAX_CHUNK_BYTES))
        self.work = self.root / MIRROR_DIR
        self.ledger_path = self.work / "ledger.json"

    def ledger(self) -> dict[str, dict[str, str]]:
        """bag -> {file: sha256} of every bag mirrored so far (survives restarts)."""
        try:
            return json.loads(self.ledger_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise TransferError(f"{self.ledger_path} is unreadable ({exc}); move it away to mirror again") from exc

    def _remember(self, bag: OfferedBag) -> None:
        ledger = self.ledger()
        ledger[bag.bag] = {f.name: f.sha256 for f in bag.files}
        tmp = self.ledger_path.with_name(f".{self.ledger_path.name}.tmp")
        tmp.write_text(json.dumps(ledger, indent=1, sort_keys=True))
        os.replace(tmp, self.ledger_path)

    def sync(self, offered: Iterable[OfferedBag]) -> MirrorReport:
        """Mirror every offered bag not in the ledger. TransferError if one cannot be fetched intact
        (what was downloaded stays for the next try); conflicts are reported, not raised."""
        report = MirrorReport()
        self.work.mkdir(parents=True, exist_ok=True)
        done = self.ledger()
        for bag in offered:
            if bag.bag not in done:
                self._mirror(bag, report)
        return report

    def _mirror(self, bag: OfferedBag, report: MirrorReport) -> None:
        final = self.root / bag.bag
        if final.exists():
            if self._same(final, bag):
                self._remember(bag)
                report.present.append(bag.bag)
            else:
                report.conflicts.append(f"{bag.bag} is here with other contents (left as it is)")
            return
        staged = self.work / "incoming" / bag.bag
        staged.mkdir(parents=True, exist_ok=True)
        for f in bag.files:
            self._file(bag.bag, f, staged, report)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, final)  # whole, at once; refused if something appeared there meanwhile
        except OSError as exc:
            report.conflicts.append(f"{bag.bag} appeared here while it was fetched ({exc.strerror}); left as it is")
            return
        self._remember(bag)
        report.fetched.append(bag.bag)

    def _same(self, folder: Path, bag: OfferedBag) -> bool:
        return all((folder / f.name).is_file() and sha256_file(folder / f.name) == f.sha256 for f in bag.files)

    def _file(self, bag: str, f: OfferedFile, staged: Path, report: MirrorReport) -> None:
        target = staged / f.name
        if target.is_file() and target.stat().st_size == f.size and sha256_file(target) == f.sha256:
            return  # verified before a restart
        part = staged / f"{f.name}.part"
        for attempt in range(2):  # a second time from zero if a resumed part does not check out
            have = part.stat().st_size if part.exists() else 0
            if have > f.size:
                part.unlink()
                have = 0
            if attempt == 0:
                report.resumed_bytes += have
            with open(part, "ab") as out:
                while have < f.size:
                    size, sha, data = self.fetch(bag, f.name, have, self.chunk_bytes)
                    if size != f.size or sha != f.sha256:
                        raise TransferError(f"{bag}/{f.name} changed on the recorder's host during the copy")
                    if not data:
                        raise TransferError(f"{bag}/{f.name}: empty chunk at offset {have} of {f.size}")
                    out.write(data)
                    have += len(data)
                    report.bytes += len(data)
                out.flush()
                os.fsync(out.fileno())
            if sha256_file(part) == f.sha256:
                os.replace(part, target)
                return
            part.unlink()
        raise TransferError(f"{bag}/{f.name}: checksum mismatch after a full copy")

    def discard_staging(self) -> None:
        """Forget partial downloads (a fresh start); mirrored bags and the ledger stay."""
        shutil.rmtree(self.work / "incoming", ignore_errors=True)
