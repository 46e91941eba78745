"""A hung Kafka and a full spool disk: served calls are either delivered or counted as lost.

Reproduces the measured failure: Kafka frozen (SIGSTOP, connections open, no answer) while the
spool sits on a 256 KB disk, 4,000 events published. Before the fix the drain task died on the
full disk, nothing was counted even after Kafka came back, and readiness stayed green.
"""

import stat
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from capps_gateway.events import SpoolingPublisher

from .publisher_rig import Broker, create_topic, events, start, topic_event_ids, wait_until

pytestmark = pytest.mark.integration

WARM, HUNG_FEW, FLOOD = 100, 50, 4000


def lost_so_far() -> float:
    """Events counted as lost, summed over reasons (the counter is process-wide: use deltas)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "capps_gateway_events_lost"
        for sample in metric.samples
        if sample.name == "capps_gateway_events_lost_total"
    )


@pytest.mark.timeout(300)
async def test_a_hung_kafka_and_a_full_disk_lose_nothing_uncounted(
    broker: Broker, tiny_disk: Path
) -> None:
    topic = f"spool-full-{uuid.uuid4().hex[:8]}"
    await create_topic(broker, topic)
    spool_dir = tiny_disk / "spool"
    publisher = SpoolingPublisher(
        broker.bootstrap,
        topic,
        "spool-full",
        spool_dir=spool_dir,
        stall_s=1.0,
        security=broker.security,
    )
    await start(publisher)
    lost_before = lost_so_far()
    try:
        warm = events(WARM)
        for event in warm:
            publisher.publish(event)
        await wait_until(lambda: publisher.unacknowledged == 0, 30, "the first events acked")
        # A loaded machine may take longer than the stall limit for a first ack: healthy again
        # once acks flow is what counts.
        await wait_until(lambda: publisher.readiness() == (True, "ok"), 30, "kafka ok again")

        # Hung, not refused: the gateway notices, says so, and stays in rotation while it spools.
        broker.pause()
        few = events(HUNG_FEW)
        for event in few:
            publisher.publish(event)
        await wait_until(lambda: not publisher.healthy, 20, "the hung broker to be noticed")
        # Those went to the producer before it was noticed; these go to the spool.
        few += events(HUNG_FEW)
        for event in few[HUNG_FEW:]:
            publisher.publish(event)
        await wait_until(lambda: publisher.spooled_bytes > 0, 20, "events to spool")
        ready, detail = publisher.readiness()
        assert ready, detail
        assert "not answering" in detail
        assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
        for segment in spool_dir.glob("*.seg"):
            assert stat.S_IMODE(segment.stat().st_mode) == 0o600

        # A flood the tiny disk cannot hold: publishing never raises, the loss is counted,
        # readiness fails, and the drain keeps running.
        flood = events(FLOOD)
        for event in flood:
            publisher.publish(event)
        await wait_until(lambda: lost_so_far() > lost_before, 30, "the loss to be counted")
        await wait_until(lambda: not publisher.readiness()[0], 30, "readiness to fail")
        assert "spool" in publisher.readiness()[1]
        assert publisher.accepting

        # Kafka returns: everything spooled is delivered, readiness comes back.
        broker.resume()
        await wait_until(
            lambda: publisher.healthy and publisher.spooled_bytes == 0,
            120,
            "the spool to be replayed",
        )
        await wait_until(lambda: publisher.unacknowledged == 0, 60, "everything acknowledged")
        await wait_until(lambda: publisher.readiness()[0], 30, "readiness to return")
    finally:
        broker.resume()
        await publisher.stop()

    found = await topic_event_ids(broker, topic)
    assert len(found) == len(set(found)), "an event was written twice"
    published = {e.id for e in warm + few + flood}
    assert set(found) <= published
    assert {e.id for e in warm + few} <= set(found), "an event spooled before the flood is lost"
    lost = lost_so_far() - lost_before
    assert lost > 0
    # Every answered call is either on the topic or counted as lost: none vanish silently.
    assert len(found) + lost == len(published)
