"""An append-only on-disk spool of encoded Kafka records, in segment files replayed oldest first.

Each record is framed as `length (4 bytes) | crc32 (4 bytes) | msgpack [key, value, headers]`,
so a write torn by a crash is recognised on read (short frame or bad checksum) and everything
from it on is skipped instead of being replayed as garbage. A segment is deleted only once
every record in it was acknowledged; a `.acked` file beside it remembers how many leading
records already were, so a replay interrupted by a crash resumes instead of starting over.
Only what the gateway publishes is written here: event data and CloudEvents headers, never
a token or any other secret.
"""

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import msgspec

from capps_events import KafkaRecord

log = logging.getLogger(__name__)

FRAME = struct.Struct(">II")
SEGMENT_SUFFIX = ".seg"
ACKED_SUFFIX = ".acked"
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


class Spool:
    """Segments in one directory: append and sync, then seal, replay and delete."""

    def __init__(self, directory: Path, segment_bytes: int = 4 * 1024 * 1024) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        # Segments left by an earlier run (even one that crashed mid-write) are sealed.
        self._sealed: dict[Path, int] = {
            path: path.stat().st_size for path in sorted(directory.glob("*" + SEGMENT_SUFFIX))
        }
        last = max((int(path.stem) for path in self._sealed), default=0)
        self._next_seq = last + 1
        self._active: IO[bytes] | None = None
        self._active_path: Path | None = None
        self._active_bytes = 0
        self._dirty = False

    @property
    def size_bytes(self) -> int:
        """Bytes on disk across all segments, the open one included."""
        return sum(self._sealed.values()) + self._active_bytes

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

        Written to the file's buffer only: `sync` makes them durable, once per batch.
        """
        count = 0
        for record in records:
            frame = encode_frame(record)
            if self._active is None or self._active_bytes >= self._segment_bytes:
                self._rotate()
            assert self._active is not None
            self._active.write(frame)
            self._active_bytes += len(frame)
            count += 1
        if count:
            self._dirty = True
        return count

    def sync(self) -> None:
        """Flush and fsync the open segment, if anything was written since the last sync."""
        if self._active is not None and self._dirty:
            self._active.flush()
            os.fsync(self._active.fileno())
            self._dirty = False

    def seal(self) -> None:
        """Close the open segment (synced) so it can be replayed."""
        if self._active is None or self._active_path is None:
            return
        self.sync()
        self._active.close()
        if self._active_bytes:
            self._sealed[self._active_path] = self._active_bytes
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
        """Remember that the first `count` records of the segment were acknowledged."""
        marker = segment.with_suffix(ACKED_SUFFIX)
        tmp = marker.with_suffix(".tmp")
        with tmp.open("w") as handle:
            handle.write(f"{count}\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(marker)

    def delete(self, segment: Path) -> None:
        """Remove a fully acknowledged segment and its marker."""
        segment.unlink(missing_ok=True)
        segment.with_suffix(ACKED_SUFFIX).unlink(missing_ok=True)
        self._sealed.pop(segment, None)

    def _rotate(self) -> None:
        self.seal()
        path = self.directory / f"{self._next_seq:016d}{SEGMENT_SUFFIX}"
        self._next_seq += 1
        self._active = path.open("xb")
        self._active_path = path
        self._active_bytes = 0
        # The new file's directory entry must survive a crash too.
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
