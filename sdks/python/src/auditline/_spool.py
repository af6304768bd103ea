"""The on-disk spool: one file per batch, written before an entry counts as queued.

Layout of a spool directory (one client at a time holds it, through an ``flock`` on ``lock``)::

    open-<seq>-<key>.seg    the batch now filling: entries are appended (and fsync'd) by log_*
    batch-<seq>-<key>.seg   a closed batch: sent, and re-sent, as exactly these bytes under <key>
    corrupt-…               a file that failed its checksums, set aside (never deleted)

A file is a sequence of records ``kind (1 byte) | length (4, LE) | crc32 (4, LE) | data``: kind 1
is an entry's JSON, kind 2 (first, if present) an *origin*: ``{"from": <key>, "positions": […]}``,
saying that this batch took over those entries of batch ``<key>`` (whose answer told to send them
again under a new key). The batch's request body is ``[`` + its entries joined by ``,`` + ``]``,
so the bytes sent under a key are the same after a restart, and the server's idempotency record
answers a re-sent batch instead of storing it again.

Crash safety:

* ``log_*`` returns only after its record is written (and fsync'd, with ``sync``); a torn record
  at the end of an open file (a crash mid-write) is cut off at recovery: that call never returned.
* An open file becomes a batch by one atomic ``rename``; at recovery, open files become batches
  too (they were never sent, so any key is right).
* Moving entries to a new batch writes the new file whole (temporary name, fsync, rename): its
  existence is the move. At recovery, positions an existing batch's origin names are settled in
  the batch they came from, so they are never sent twice.
* A batch file is deleted only once every entry in it is settled (stored, rejected, or moved).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpoolError

log = logging.getLogger("auditline")

_HEADER = struct.Struct("<BII")
KIND_ENTRY = 1
KIND_ORIGIN = 2


@dataclass
class SpooledBatch:
    """A batch found in the spool at start."""

    key: str
    payloads: list[bytes]
    #: Positions already settled elsewhere (moved to a later batch before the crash).
    moved: set[int] = field(default_factory=set)


class SpoolWriter:
    """The open file of the batch now filling."""

    def __init__(self, path: Path, fd: int, key: str, seq: int) -> None:
        self.path = path
        self.fd = fd
        self.key = key
        self.seq = seq
        self.size = 0
        #: A failed write could not be taken back: append nothing more here.
        self.broken = False


class Spool:
    def __init__(self, directory: str | os.PathLike[str], *, sync: bool = True) -> None:
        self.dir = Path(directory)
        self.sync = sync
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise SpoolError(f"cannot use the spool directory {self.dir}: {e}") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SpoolError(f"the spool {self.dir} is in use by another client (one client per directory)") from e
            raise SpoolError(f"cannot lock the spool {self.dir}: {e}") from e
        self._seq = 0
        self._files: dict[str, Path] = {}
        self._closed = False

    # -- recovery ----------------------------------------------------------------------------

    def recover(self) -> list[SpooledBatch]:
        """Every batch left by an earlier client, oldest first; open files are closed as batches."""
        found: list[tuple[int, str, Path, bool]] = []
        for path in self.dir.iterdir():
            name = path.name
            if name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a move that never completed: its source still holds it
                continue
            if not name.endswith(".seg") or not (name.startswith("open-") or name.startswith("batch-")):
                continue
            parts = name[: -len(".seg")].split("-", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                continue
            found.append((int(parts[1]), parts[2], path, parts[0] == "open"))
        found.sort()
        self._seq = max((seq for seq, _, _, _ in found), default=0)
        batches: list[SpooledBatch] = []
        origins: list[tuple[str, list[int]]] = []
        for seq, key, path, is_open in found:
            try:
                payloads, origin, torn = self._read(path)
            except SpoolError as e:
                log.error("auditline spool: %s; set aside as corrupt-%s", e, path.name)
                path.rename(self.dir / f"corrupt-{path.name}")
                continue
            if torn:
                if is_open:
                    # A write that never returned: the entry was never queued.
                    self._truncate(path, torn)
                else:
                    log.error("auditline spool: %s ends in a damaged record; sending what precedes it", path)
            if not payloads:
                path.unlink(missing_ok=True)
                continue
            if is_open:
                sealed = self.dir / f"batch-{seq:012d}-{key}.seg"
                os.rename(path, sealed)
                path = sealed
            self._files[key] = path
            if origin is not None:
                origins.append(origin)
            batches.append(SpooledBatch(key=key, payloads=payloads))
        if found:
            self._sync_dir()
        by_key = {b.key: b for b in batches}
        for source, positions in origins:
            if source in by_key:
                by_key[source].moved.update(positions)
        done = [b for b in batches if len(b.moved) >= len(b.payloads)]
        for b in done:
            self.remove(b.key)
        return [b for b in batches if len(b.moved) < len(b.payloads)]

    def _read(self, path: Path) -> tuple[list[bytes], tuple[str, list[int]] | None, int]:
        """Entries, origin, and where a damaged tail starts (0: none)."""
        data = path.read_bytes()
        payloads: list[bytes] = []
        origin: tuple[str, list[int]] | None = None
        at = 0
        while at < len(data):
            if at + _HEADER.size > len(data):
                return payloads, origin, at
            kind, length, crc = _HEADER.unpack_from(data, at)
            start = at + _HEADER.size
            end = start + length
            if end > len(data) or zlib.crc32(data[start:end]) != crc or kind not in (KIND_ENTRY, KIND_ORIGIN):
                return payloads, origin, at
            chunk = data[start:end]
            if kind == KIND_ENTRY:
                payloads.append(chunk)
            else:
                try:
                    value = json.loads(chunk)
                    origin = (str(value["from"]), [int(p) for p in value["positions"]])
                except (ValueError, KeyError, TypeError) as e:
                    raise SpoolError(f"{path}: unreadable origin record ({e})") from e
            at = end
        return payloads, origin, 0

    def _truncate(self, path: Path, size: int) -> None:
        with open(path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    # -- writing -------------------------------------------------------------------------------

    def open_batch(self, key: str) -> SpoolWriter:
        self._seq += 1
        path = self.dir / f"open-{self._seq:012d}-{key}.seg"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as e:
            raise SpoolError(f"cannot create {path}: {e}") from e
        if self.sync:
            self._sync_dir()
        return SpoolWriter(path, fd, key, self._seq)

    def append(self, writer: SpoolWriter, payload: bytes) -> None:
        record = _HEADER.pack(KIND_ENTRY, len(payload), zlib.crc32(payload)) + payload
        try:
            written = os.write(writer.fd, record)
            while written < len(record):
                written += os.write(writer.fd, record[written:])
            if self.sync:
                os.fdatasync(writer.fd)
        except OSError as e:
            # Take back whatever part of the record reached the file; if even that fails, the
            # damaged tail is cut off at recovery (its checksum fails) all the same.
            try:
                os.ftruncate(writer.fd, writer.size)
            except OSError:
                writer.broken = True
            raise SpoolError(f"cannot write to the spool ({e}); the entry was not queued") from e
        writer.size += len(record)

    def seal(self, writer: SpoolWriter) -> None:
        """Closes the filling batch: from now on it is sent as it is."""
        sealed = self.dir / f"batch-{writer.seq:012d}-{writer.key}.seg"
        try:
            if self.sync:
                os.fsync(writer.fd)
            os.close(writer.fd)
            os.rename(writer.path, sealed)
            if self.sync:
                self._sync_dir()
        except OSError as e:
            raise SpoolError(f"cannot close the spooled batch {writer.path}: {e}") from e
        self._files[writer.key] = sealed

    def write_batch(self, key: str, payloads: list[bytes], origin: tuple[str, list[int]] | None) -> None:
        """A whole new batch (entries moved out of ``origin``'s batch), made visible atomically."""
        self._seq += 1
        final = self.dir / f"batch-{self._seq:012d}-{key}.seg"
        temporary = final.with_name(final.name + ".tmp")
        parts: list[bytes] = []
        if origin is not None:
            data = json.dumps({"from": origin[0], "positions": origin[1]}).encode()
            parts.append(_HEADER.pack(KIND_ORIGIN, len(data), zlib.crc32(data)) + data)
        for p in payloads:
            parts.append(_HEADER.pack(KIND_ENTRY, len(p), zlib.crc32(p)) + p)
        try:
            with open(temporary, "wb") as f:
                f.write(b"".join(parts))
                f.flush()
                os.fsync(f.fileno())
            os.rename(temporary, final)
            self._sync_dir()
        except OSError as e:
            temporary.unlink(missing_ok=True)
            raise SpoolError(f"cannot write the spooled batch {final}: {e}") from e
        self._files[key] = final

    def remove(self, key: str) -> None:
        """The batch is settled: its file goes."""
        path = self._files.pop(key, None)
        if path is None:
            return
        try:
            path.unlink(missing_ok=True)
            if self.sync:
                self._sync_dir()
        except OSError as e:
            log.warning("auditline spool: cannot delete %s (%s); it will be re-sent (and answered) later", path, e)

    def discard_open(self, writer: SpoolWriter) -> None:
        """An open batch that got no entry (its only write failed)."""
        try:
            os.close(writer.fd)
            writer.path.unlink(missing_ok=True)
        except OSError:
            pass

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            os.close(self._lock_fd)
