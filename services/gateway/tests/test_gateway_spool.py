"""Unit tests of the on-disk spool: segments written, read back, resumed, torn tails, sizes."""

import stat
import time
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from capps_events import KafkaRecord, encode_request
from capps_gateway.auth.claims import check_claims
from capps_gateway.events import build_event
from capps_gateway.spool import Spool, decode_frames, encode_frame, loss_reason
from capps_kit.settings import API_AUDIENCE


def record(n: int) -> KafkaRecord:
    return KafkaRecord(
        key=b"app-1", value=f'{{"n":{n}}}'.encode(), headers=[("ce_id", str(n).encode())]
    )


def test_records_round_trip_through_a_sealed_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.empty
    assert spool.append([record(1), record(2), record(3)]) == 3
    spool.sync()
    spool.seal()
    [segment] = spool.sealed_segments()
    records, acked = spool.read(segment)
    assert acked == 0
    assert records == [record(1), record(2), record(3)]


def test_size_accounting_matches_the_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    spool.append([record(n) for n in range(20)])
    spool.seal()
    on_disk = sum(path.stat().st_size for path in tmp_path.glob("*.seg"))
    assert spool.size_bytes == on_disk
    assert spool.segment_count == len(list(tmp_path.glob("*.seg"))) > 1
    for segment in spool.sealed_segments():
        spool.delete(segment)
    assert spool.empty
    assert spool.size_bytes == 0
    assert not list(tmp_path.iterdir())


def test_rotation_keeps_every_record_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=150)
    spool.append([record(n) for n in range(30)])
    spool.seal()
    found = [r for segment in spool.sealed_segments() for r in spool.read(segment)[0]]
    assert found == [record(n) for n in range(30)]


def test_a_new_spool_picks_up_segments_left_by_an_earlier_run(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.append([record(1)])
    first.close()
    second = Spool(tmp_path)
    assert second.segment_count == 1
    second.append([record(2)])
    second.seal()
    segments = second.sealed_segments()
    assert [second.read(s)[0] for s in segments] == [[record(1)], [record(2)]]


def test_the_acked_marker_resumes_a_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([record(n) for n in range(5)])
    spool.seal()
    [segment] = spool.sealed_segments()
    spool.mark_acked(segment, 3)
    records, acked = Spool(tmp_path).read(segment)
    assert acked == 3
    assert records == [record(3), record(4)]
    spool.delete(segment)
    assert not list(tmp_path.iterdir())


def test_a_torn_tail_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([record(1), record(2)])
    spool.close()
    [segment] = spool.sealed_segments()
    # A crash mid-write: half of a third frame reached the disk.
    with segment.open("ab") as handle:
        handle.write(encode_frame(record(3))[:9])
    records, _ = Spool(tmp_path).read(segment)
    assert records == [record(1), record(2)]


def test_a_corrupt_frame_stops_the_read() -> None:
    good = encode_frame(record(1))
    bad = bytearray(encode_frame(record(2)))
    bad[-1] ^= 0xFF
    records, intact = decode_frames(good + bytes(bad) + encode_frame(record(3)))
    assert records == [record(1)]
    assert intact == len(good)


def test_an_absurd_length_is_a_torn_frame() -> None:
    records, intact = decode_frames(b"\xff\xff\xff\xff\x00\x00\x00\x00" + b"x" * 20)
    assert records == []
    assert intact == 0


def test_the_event_of_a_call_spools_without_its_token(tmp_path: Path) -> None:
    # A real signed token, checked as the gateway checks it; its call's event, as spooled,
    # holds no part of it.
    now = int(time.time())
    claims = {
        "iss": "https://issuer.test",
        "aud": API_AUDIENCE,
        "sub": "app-1",
        "client_id": "app-1",
        "tid": "tenant-1",
        "roles": ["Alert.Read.All"],
        "jti": "jti-1",
        "iat": now,
        "exp": now + 600,
    }
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    token = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}, claims, key)
    decoded = jwt.decode(token, key).claims
    principal = check_claims(
        decoded, issuer="https://issuer.test", audience=API_AUDIENCE, now=now, leeway_s=30
    )
    event = build_event(
        principal=principal,
        method="GET",
        route="/api/alerts",
        status=200,
        latency_ms=1.0,
        bytes_in=0,
        bytes_out=10,
        request_id="r-1",
        gateway="g-1",
    )
    spool = Spool(tmp_path)
    spool.append([encode_request(event, "//capps/gateway/g-1")])
    spool.close()
    data = b"".join(path.read_bytes() for path in tmp_path.glob("*.seg"))
    assert b"app-1" in data  # the check reads the real bytes
    for part in token.split("."):
        assert part.encode() not in data
    assert b"Bearer" not in data
    assert b"authorization" not in data.lower()


def test_past_the_cap_records_are_refused_and_earlier_ones_stay(tmp_path: Path) -> None:
    frame = len(encode_frame(record(0)))
    spool = Spool(tmp_path, segment_bytes=frame * 3, max_bytes=frame * 5)
    assert spool.append([record(n) for n in range(4)]) == 4
    assert spool.refusing is None
    assert spool.append([record(n) for n in range(4, 8)]) == 1
    refusing: str | None = spool.refusing
    assert refusing is not None
    assert loss_reason(refusing) == "spool_full"
    assert spool.append([record(9)]) == 0
    spool.seal()
    found = [r for segment in spool.sealed_segments() for r in spool.read(segment)[0]]
    assert found == [record(n) for n in range(5)]
    spool.delete(spool.sealed_segments()[0])
    refusing = spool.refusing
    assert refusing is None
    assert spool.append([record(10)]) == 1


def test_spool_files_are_private_to_the_service_user(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    spool = Spool(directory)
    spool.append([record(1)])
    spool.seal()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [segment] = spool.sealed_segments()
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600


def test_one_record_at_a_time_reads_back_like_a_batch_across_rotations(tmp_path: Path) -> None:
    one_by_one = Spool(tmp_path / "one", segment_bytes=150)
    batched = Spool(tmp_path / "batch", segment_bytes=150)
    for n in range(30):
        assert one_by_one.append([record(n)]) == 1
    batched.append([record(n) for n in range(30)])
    for spool in (one_by_one, batched):
        spool.seal()
    found = [r for s in one_by_one.sealed_segments() for r in one_by_one.read(s)[0]]
    assert found == [record(n) for n in range(30)]
    assert one_by_one.size_bytes == sum(p.stat().st_size for p in (tmp_path / "one").iterdir())
    assert one_by_one.segment_count == len(list((tmp_path / "one").glob("*.seg"))) > 1


def test_one_record_past_the_cap_is_refused_and_earlier_ones_stay(tmp_path: Path) -> None:
    frame_bytes = len(encode_frame(record(0)))
    spool = Spool(tmp_path, max_bytes=frame_bytes * 3)
    assert [spool.append([record(n)]) for n in range(5)] == [1, 1, 1, 0, 0]
    assert spool.refusing is not None
    assert loss_reason(spool.refusing) == "spool_full"
    spool.seal()
    [segment] = spool.sealed_segments()
    assert spool.read(segment)[0] == [record(0), record(1), record(2)]


def test_a_spool_that_need_not_outlive_the_machine_never_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("capps_gateway.spool.os.fsync", synced.append)
    Spool(tmp_path / "journal", segment_bytes=100, durable=False).append(
        [record(n) for n in range(10)]
    )
    assert synced == []
    Spool(tmp_path / "spool", segment_bytes=100).append([record(n) for n in range(10)])
    assert synced, "the durable spool syncs what it seals, and its directory"
