"""The spooling publisher against a real, throwaway Kafka broker that is killed and restarted.

Events published while it is down must not block, must spool, and must reach the topic exactly
once when it is back; a clean stop while it is down must leave the spool on disk for the next
publisher to replay.
"""

import uuid
from pathlib import Path

import pytest

from capps_gateway.events import SpoolingPublisher

from .publisher_rig import (
    Broker,
    create_topic,
    events,
    publish_all,
    spooled_ids,
    start,
    topic_event_ids,
    wait_until,
)

pytestmark = pytest.mark.integration

N, M1, M2, M3_IN_FLIGHT, M3_SPOOLED = 400, 300, 500, 40, 250


@pytest.mark.timeout(300)
async def test_no_event_is_lost_or_doubled_across_outages_and_a_stop(
    broker: Broker, tmp_path: Path
) -> None:
    topic = f"spool-test-{uuid.uuid4().hex[:8]}"
    await create_topic(broker, topic)
    spool_dir = tmp_path / "spool"
    options = {
        "spool_dir": spool_dir,
        "stall_s": 1.0,
        "flush_timeout_s": 2.0,
        "security": broker.security,
    }
    publisher = SpoolingPublisher(broker.bootstrap, topic, "spool-test", **options)  # type: ignore[arg-type]
    await start(publisher)

    before = events(N)
    publish_all(publisher, before)
    await wait_until(lambda: publisher.unacknowledged == 0, 30, "the first events acknowledged")

    # Outage one: some events strand in the producer, the rest spool; nothing blocks.
    broker.kill()
    during = events(M1)
    publish_all(publisher, during)
    await wait_until(lambda: not publisher.healthy, 20, "the outage to be noticed")
    spooled = events(M2)
    publish_all(publisher, spooled)
    await wait_until(lambda: publisher.spooled_bytes > 0, 10, "events to spool")
    broker.start()
    await wait_until(
        lambda: (
            publisher.healthy and publisher.spooled_bytes == 0 and publisher.unacknowledged == 0
        ),
        120,
        "the spool to be replayed after the broker came back",
    )

    # Outage two, then a clean stop while the broker is still down.
    broker.kill()
    stranded = events(M3_IN_FLIGHT)
    publish_all(publisher, stranded)
    await wait_until(lambda: not publisher.healthy, 20, "the second outage to be noticed")
    left = events(M3_SPOOLED)
    publish_all(publisher, left)
    await publisher.stop()
    on_disk = set(spooled_ids(spool_dir))
    ambiguous = set(spooled_ids(spool_dir / "ambiguous"))
    assert {e.id for e in left} <= on_disk
    # A stranded batch that was sent but never acknowledged is set aside, not replayed.
    assert ambiguous <= {e.id for e in stranded}
    assert on_disk | ambiguous == {e.id for e in stranded + left}
    assert not on_disk & ambiguous

    # A new publisher (a restarted gateway) replays what the old one left.
    broker.start()
    successor = SpoolingPublisher(broker.bootstrap, topic, "spool-test-2", **options)  # type: ignore[arg-type]
    await start(successor)
    await wait_until(lambda: successor.spooled_bytes == 0, 120, "the left spool to be replayed")
    await successor.stop()

    found = await topic_event_ids(broker, topic)
    assert len(found) == len(set(found)), "an event was written twice"
    expected = {e.id for e in before + during + spooled + stranded + left} - ambiguous
    assert set(found) == expected
    assert not spooled_ids(spool_dir)
