"""A write-ahead journal of request events, so a killed gateway loses no answered call.

Every event is written (a plain `write()`, no fsync: the page cache is the kernel's and
survives the process) before its call's answer is sent. Records get consecutive sequence
numbers in the order they are written, which is also the order the publisher drains them.
A small state file keeps two marks, rewritten in place:
- `handed`: every record before it went to the producer or the spool. Written *before* a batch
  is handed over, so a record past it certainly never reached Kafka.
- `settled`: every record before it is accounted for (acknowledged, spooled, set aside).
A journal segment is deleted once all its records are settled. On the next start, what a
killed process left is sorted by those marks: before `settled` nothing to do, from `handed`
on never sent (replayed through the spool), in between maybe sent (set aside as ambiguous,
since the aggregator dedups by offset and a replay could count a call twice).
A machine crash (power loss) can still lose what the page cache had not written to disk.
"""

import fcntl
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from capps_events import KafkaRecord
from capps_gateway.spool import FILE_MODE, Spool

log = logging.getLogger(__name__)

STATE_FILE = "marks"
SEGMENT_RECORDS = 50_000
_STATE_WIDTH = 64


@dataclass(slots=True)
class JournalBatch:
    """Records [start, end) drained together, and how many are not settled yet."""

    end: int
    remaining: int


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a killed process left in the journal, sorted by its marks."""

    unsent: list[KafkaRecord]
    ambiguous: list[KafkaRecord]


def sort_leftovers(records: list[KafkaRecord], base: int, settled: int, handed: int) -> Recovered:
    """Split records numbered from `base` by the marks (pure)."""
    unsent: list[KafkaRecord] = []
    ambiguous: list[KafkaRecord] = []
    for offset, record in enumerate(records):
        seq = base + offset
        if seq < settled:
            continue
        (unsent if seq >= handed else ambiguous).append(record)
    return Recovered(unsent, ambiguous)


class Journal:
    """Appends records ahead of the answer; tracks what is handed over and settled."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = _lock(directory / ".lock")
        # No size rotation of its own: the journal seals a segment every SEGMENT_RECORDS.
        # Never fsynced: it only has to outlive the process (the page cache is the kernel's),
        # and an fsync of a sealed segment stalled every call for tens of milliseconds.
        self._spool = Spool(directory, segment_bytes=1 << 62, durable=False)
        self._state_path = directory / STATE_FILE
        self._leftovers = self._spool.sealed_segments()
        self.recovered = self._recover()
        """What a killed process left; store it elsewhere, then call `open`."""
        self._base = 0
        self._next = 0
        self._handed = 0
        self._settled = 0
        self._segments: deque[tuple[Path | None, int]] = deque()
        """(path once sealed, end seq) of each segment, oldest first; the last one is open."""
        self._open_count = 0
        self._batches: deque[JournalBatch] = deque()
        self._state_fd = -1

    def open(self) -> None:
        """Drop the recovered leftovers (stored elsewhere by now) and start new marks."""
        for segment in self._leftovers:
            self._spool.delete(segment)
        self._leftovers = []
        self._state_fd = os.open(self._state_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        self._write_marks()

    def write(self, record: KafkaRecord) -> None:
        """Write one record before its call is answered; never raises (a full disk is logged
        by the spool, and the event still goes on in memory)."""
        self._spool.append((record,))
        self._next += 1
        self._open_count += 1
        if self._open_count >= SEGMENT_RECORDS:
            self._spool.seal()
            sealed = self._spool.sealed_segments()
            self._segments.append((sealed[-1] if sealed else None, self._next))
            self._open_count = 0

    def hand_over(self, count: int) -> JournalBatch:
        """Mark the next `count` records as being handed over; persisted before they are."""
        self._handed += count
        batch = JournalBatch(self._handed, count)
        self._batches.append(batch)
        self._write_marks()
        return batch

    def settle(self, batch: JournalBatch | None, count: int) -> None:
        """`count` records of `batch` are accounted for."""
        if batch is None:
            return
        batch.remaining -= count
        batches = self._batches
        while batches and batches[0].remaining <= 0:
            self._settled = batches.popleft().end

    def checkpoint(self) -> None:
        """Persist the marks and delete segments whose records are all settled."""
        while self._segments and self._segments[0][1] <= self._settled:
            path, end = self._segments.popleft()
            if path is not None:
                self._spool.delete(path)
            self._base = end
        self._write_marks()

    def close(self, *, all_settled: bool) -> None:
        """At a clean stop: when everything is settled the journal is emptied."""
        self._spool.close()
        if all_settled:
            for segment in self._spool.sealed_segments():
                self._spool.delete(segment)
            self._base = self._settled = self._handed = self._next
        self._write_marks()
        if self._state_fd >= 0:
            os.close(self._state_fd)
            self._state_fd = -1
        os.close(self._lock_fd)

    def _write_marks(self) -> None:
        if self._state_fd < 0:
            return
        text = f"{self._base} {self._settled} {self._handed}".encode().ljust(_STATE_WIDTH)
        try:
            os.pwrite(self._state_fd, text, 0)
        except OSError as exc:
            log.warning("journal marks not written", extra={"reason": str(exc)})

    def _recover(self) -> Recovered:
        segments = self._leftovers
        if not segments:
            return Recovered([], [])
        records = [r for segment in segments for r in self._spool.read(segment)[0]]
        try:
            base, settled, handed = (int(v) for v in self._state_path.read_text().split())
        except (FileNotFoundError, ValueError):
            # Marks unknown: nothing can be told apart, so nothing is replayed twice.
            base = settled = handed = 0
            found = Recovered([], records)
        else:
            found = sort_leftovers(records, base, settled, handed)
        log.warning(
            "journal of a killed process recovered",
            extra={"unsent": len(found.unsent), "ambiguous": len(found.ambiguous)},
        )
        return found


class JournalInUseError(Exception):
    """Another process holds the journal: each gateway process needs its own spool directory."""


def _lock(path: Path) -> int:
    """An exclusive lock held for the process's life (released by the kernel when it dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalInUseError(
            f"{path.parent} is used by another gateway process; give each its own "
            "GATEWAY_SPOOL_DIR (workers get a subdirectory each)"
        ) from None
    return fd
