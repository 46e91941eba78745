"""Integration tests of `python -m capps_kit.topics`, the local stack's Kafka health check."""

import os

import pytest

from capps_events import APPS_TOPIC, REQUESTS_DLQ_TOPIC, REQUESTS_TOPIC, TOPICS
from capps_kit import topics
from capps_kit.kafka import make_admin
from capps_kit.settings import KafkaSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bootstrap() -> str:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        pytest.fail("set KAFKA_BOOTSTRAP_SERVERS (make up writes it to .local/stack.env)")
    return servers


def test_describe_says_what_was_created() -> None:
    lines = topics.describe(TOPICS, [APPS_TOPIC])
    assert lines[0].startswith(f"present  {REQUESTS_TOPIC} partitions=12")
    assert lines[2] == f"created  {APPS_TOPIC} partitions=6 cleanup.policy=compact"


async def test_running_twice_leaves_the_design_topics(
    bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The admin login of stack.env, as `make up` runs the command.
    security = KafkaSettings().kafka_security
    first = await topics.run(bootstrap, 20, security)
    assert [line.split()[1] for line in first] == [REQUESTS_TOPIC, REQUESTS_DLQ_TOPIC, APPS_TOPIC]
    assert {line.split()[0] for line in first} <= {"present", "created"}
    lines = await topics.run(bootstrap, 20, security)
    assert all(line.startswith("present") for line in lines)
    assert [line.split()[1] for line in lines] == [REQUESTS_TOPIC, REQUESTS_DLQ_TOPIC, APPS_TOPIC]
    admin = make_admin(bootstrap, "topics-test", security)
    await admin.start()
    try:
        described = await admin.describe_topics([REQUESTS_TOPIC])
    finally:
        await admin.close()
    assert len(described[0]["partitions"]) == 12


def test_an_absent_broker_exits_1_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert topics.main(["--bootstrap-servers", "127.0.0.1:1", "--timeout", "5"]) == 1
    assert "kafka at 127.0.0.1:1" in capsys.readouterr().err
