"""An append-only on-disk spool of encoded Kafka records, in segment files replayed oldest first.

Each record is framed as `length (4 bytes) | crc32 (4 bytes) | msgpack [key, value, headers]`,
so a write torn by a crash is recognised on read (short frame or bad checksum) and everything
from it on is skipped instead of being replayed as garbage. A segment is deleted only once
every record in it was acknowledged; a `.acked` file beside it remembers how many leading
records already were, so a replay interrupted by a crash resumes instead of starting over.
Only what the gateway publishes is written here: event data and CloudEvents headers, never
a token or any other secret; still, directories are 0700 and files 0600 (the service's user).

The spool never raises on a full disk and never grows past `max_bytes`: records that do not
fit are refused (`append` returns how many were written) and the file is cut back to its last
whole frame, so what was spooled before stays readable. Writes are plain `write()` calls on
the file descriptor, no user-space buffer: a record written survives the process being killed.
"""

import contextlib
import errno
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import msgspec

from capps_events import KafkaRecord

log = logging.getLogger(__name__)

FRAME = struct.Struct(">II")
SEGMENT_SUFFIX = ".seg"
ACKED_SUFFIX = ".acked"
DIR_MODE = 0o700
FILE_MODE = 0o600
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""A frame longer than this can only be a torn or corrupt length field."""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[bytes, bytes | None, list[tuple[str, bytes]]])


def encode_frame(record: KafkaRecord) -> bytes:
    """One record as a self-checking frame."""
    payload = _encoder.encode((record.key, record.value, record.headers))
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_frames(data: bytes) -> tuple[list[KafkaRecord], int]:
    """The records of a segment's bytes and the length of the intact prefix.

    Reading stops at the first frame that is cut short, fails its checksum or does not
    decode: after a crash only the tail can be torn, and nothing past it is trusted.
    """
    records: list[KafkaRecord] = []
    pos = 0
    end = len(data)
    while pos + FRAME.size <= end:
        length, crc = FRAME.unpack_from(data, pos)
        start = pos + FRAME.size
        if length > MAX_RECORD_BYTES or start + length > end:
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        try:
            key, value, headers = _decoder.decode(payload)
        except msgspec.DecodeError:
            break
        records.append(KafkaRecord(key=key, value=value, headers=list(headers)))
        pos = start + length
    return records, pos


AT_CAP = "spool at its size cap"
DISK_FULL = "disk full"


def loss_reason(refusing: str | None) -> str:
    """The metric label of a spool's refusal: spool_full, disk_full or write_failed."""
    if refusing is not None and refusing.startswith(AT_CAP):
        return "spool_full"
    if refusing == DISK_FULL:
        return "disk_full"
    return "write_failed"


class Spool:
    """Segments in one directory: append and sync, then seal, replay and delete."""

    def __init__(
        self,
        directory: Path,
        segment_bytes: int = 4 * 1024 * 1024,
        max_bytes: int = 1024 * 1024 * 1024,
        *,
        durable: bool = True,
    ) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._durable = durable
        """False: never fsync (for what only has to survive the process, not the machine)."""
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode passes through the umask, and an older run may have made it wider.
        directory.chmod(DIR_MODE)
        # Segments left by an earlier run (even one that crashed mid-write) are sealed.
        self._sealed: dict[Path, int] = {}
        for path in sorted(directory.glob("*" + SEGMENT_SUFFIX)):
            path.chmod(FILE_MODE)
            self._sealed[path] = path.stat().st_size
        self._sealed_bytes = sum(self._sealed.values())
        last = max((int(path.stem) for path in self._sealed), default=0)
        self._next_seq = last + 1
        self._active: int | None = None
        self._active_path: Path | None = None
        self._active_bytes = 0
        self._dirty = False
        self.refusing: str | None = None
        """Why the last append could not write everything (cap, disk full); None once one could."""

    @property
    def size_bytes(self) -> int:
        """Bytes on disk across all segments, the open one included."""
        return self._sealed_bytes + self._active_bytes

    @property
    def segment_count(self) -> int:
        """Segments on disk, the open one included."""
        return len(self._sealed) + (1 if self._active is not None else 0)

    @property
    def empty(self) -> bool:
        """Whether nothing is spooled."""
        return self.segment_count == 0

    def append(self, records: Iterable[KafkaRecord]) -> int:
        """Write records to the open segment (rotating when full); return how many.

        The records past the size cap, or past what the disk takes, are not written (the
        caller counts them as lost); `refusing` then says why. Never raises.
        Written with `write()`: durable against a killed process at once, against a machine
        crash after `sync`.
        """
        frames = [encode_frame(record) for record in records]
        written = 0
        while written < len(frames):
            needs_segment = self._active is None or self._active_bytes >= self._segment_bytes
            if needs_segment and not self._rotate():
                break
            count = self._fitting(frames, written)
            if not count:
                self.refusing = f"{AT_CAP} of {self.max_bytes} bytes"
                break
            # As many whole frames as fit, in one write() (the journal's one record per call).
            end = written + count
            if not self._write(frames[written] if count == 1 else b"".join(frames[written:end])):
                break
            written = end
        if written:
            self._dirty = True
            if written == len(frames):
                self.refusing = None
        return written

    def _fitting(self, frames: list[bytes], first: int) -> int:
        """How many frames from `first` fit under the cap and in the open segment (at least
        one goes into an empty segment, however large)."""
        room = self.max_bytes - self.size_bytes
        segment_room = self._segment_bytes - self._active_bytes
        count = size = 0
        for frame in frames[first:]:
            size += len(frame)
            if size > room or (count and size > segment_room):
                break
            count += 1
        return count

    def _write(self, data: bytes) -> bool:
        """Write all of `data` to the open segment, or nothing (cut back to the last frame)."""
        assert self._active is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._active, view[done:])
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._active, self._active_bytes)
            self._refuse(exc)
            return False
        self._active_bytes += done
        return True

    def _refuse(self, exc: OSError) -> None:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = DISK_FULL if full else f"write failed: {exc.strerror or exc}"
        if self.refusing != reason:
            log.error(
                "spool cannot take request events",
                extra={"reason": reason, "dir": str(self.directory)},
            )
        self.refusing = reason

    def sync(self) -> None:
        """Fsync the open segment, if anything was written since the last sync; never raises."""
        if self._active is not None and self._dirty and self._durable:
            try:
                os.fsync(self._active)
            except OSError as exc:
                self._refuse(exc)
                return
            self._dirty = False

    def seal(self) -> None:
        """Close the open segment (synced) so it can be replayed."""
        if self._active is None or self._active_path is None:
            return
        self.sync()
        with contextlib.suppress(OSError):
            os.close(self._active)
        if self._active_bytes:
            self._sealed[self._active_path] = self._active_bytes
            self._sealed_bytes += self._active_bytes
        else:
            self._active_path.unlink(missing_ok=True)
        self._active = None
        self._active_path = None
        self._active_bytes = 0

    def close(self) -> None:
        """Seal what is open; the spool stays on disk for the next run."""
        self.seal()

    def sealed_segments(self) -> list[Path]:
        """Sealed segments, oldest first."""
        return sorted(self._sealed)

    def read(self, segment: Path) -> tuple[list[KafkaRecord], int]:
        """The segment's records not yet acknowledged, and how many before them already were."""
        records, intact = decode_frames(segment.read_bytes())
        if intact < self._sealed.get(segment, intact):
            log.warning(
                "spool segment has a torn tail, skipped",
                extra={"segment": segment.name, "intact_bytes": intact},
            )
        acked = self.acked(segment)
        return records[acked:], acked

    def acked(self, segment: Path) -> int:
        """How many leading records of the segment were acknowledged already."""
        marker = segment.with_suffix(ACKED_SUFFIX)
        try:
            return int(marker.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def mark_acked(self, segment: Path, count: int) -> None:
        """Remember that the first `count` records of the segment were acknowledged.

        On a full disk the marker stays behind: the replay goes on, and only a crash before
        the segment is deleted would send those records again.
        """
        marker = segment.with_suffix(ACKED_SUFFIX)
        tmp = marker.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                os.write(fd, f"{count}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(marker)
        except OSError as exc:
            log.warning(
                "spool marker not written", extra={"segment": segment.name, "reason": str(exc)}
            )
            tmp.unlink(missing_ok=True)

    def delete(self, segment: Path) -> None:
        """Remove a fully acknowledged segment and its marker."""
        segment.unlink(missing_ok=True)
        segment.with_suffix(ACKED_SUFFIX).unlink(missing_ok=True)
        self._sealed_bytes -= self._sealed.pop(segment, 0)
        # Room was made: the next append finds out whether it is enough.
        self.refusing = None

    def _rotate(self) -> bool:
        """Seal the open segment and open the next; False (refusing) when the disk says no."""
        self.seal()
        path = self.directory / f"{self._next_seq:016d}{SEGMENT_SUFFIX}"
        try:
            self._active = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE
            )
        except OSError as exc:
            self._refuse(exc)
            return False
        self._next_seq += 1
        self._active_path = path
        self._active_bytes = 0
        if not self._durable:
            return True
        # The new file's directory entry must survive a crash too.
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return True
