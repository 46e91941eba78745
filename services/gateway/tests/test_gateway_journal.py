"""Unit tests of the journal: marks sort a killed process's leftovers; one process per dir."""

import os
from pathlib import Path

import pytest

from capps_events import KafkaRecord
from capps_gateway.journal import Journal, JournalInUseError, sort_leftovers


def record(n: int) -> KafkaRecord:
    return KafkaRecord(key=b"app", value=b"%d" % n, headers=[])


def test_leftovers_before_settled_are_done_from_handed_on_unsent_between_ambiguous() -> None:
    found = sort_leftovers([record(n) for n in range(10, 20)], base=10, settled=13, handed=16)
    assert found.ambiguous == [record(13), record(14), record(15)]
    assert found.unsent == [record(n) for n in range(16, 20)]


def test_a_killed_journal_is_recovered_by_the_next_process(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    first.open()
    for n in range(6):
        first.write(record(n))
    batch = first.hand_over(4)  # 0..3 handed to the producer
    first.settle(batch, 2)  # not a prefix yet: settled stays 0
    first.checkpoint()
    first._spool.seal()  # what the kernel has of a killed process's writes
    os.close(first._lock_fd)  # the kernel releases a killed process's lock
    second = Journal(tmp_path)
    assert second.recovered.ambiguous == [record(n) for n in range(4)]
    assert second.recovered.unsent == [record(4), record(5)]
    second.open()
    assert Journal(tmp_path / "other").recovered.unsent == []


def test_a_directory_serves_one_process(tmp_path: Path) -> None:
    held = Journal(tmp_path)
    with pytest.raises(JournalInUseError):
        Journal(tmp_path)
    held.close(all_settled=True)
    Journal(tmp_path).close(all_settled=True)
