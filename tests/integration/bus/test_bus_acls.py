"""The secured event bus: each service's Kafka principal can do its job and nothing else.

Runs against the stack's Kafka, secured as in production (SASL/SCRAM, StandardAuthorizer, no
ACL means denied) with the users and ACLs of deploy/kafka/bus-security.sh. The services'
passwords come from the file `make up` generated (CAPPS_KAFKA_PASSWORDS in stack.env).
"""

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from capps_events import APPS_TOPIC, REQUESTS_DLQ_TOPIC, REQUESTS_TOPIC, encode_request
from capps_events.testing import request_event
from capps_kit.kafka import make_producer
from capps_kit.kafka_security import KafkaSecurity
from capps_stack.config import (
    KAFKA_SASL_MECHANISM,
    KAFKA_SECURITY_PROTOCOL,
    kafka_password_variable,
    parse_env_file,
)

pytestmark = pytest.mark.integration

DENIED_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    """The stack's Kafka passwords by variable (KAFKA_GATEWAY_PASSWORD...)."""
    path = os.environ.get("CAPPS_KAFKA_PASSWORDS")
    if not path or not Path(path).is_file():
        pytest.fail(
            "the ACL tests need the stack's Kafka passwords: run `make up` and export "
            "`.local/stack.env` (CAPPS_KAFKA_PASSWORDS), or run `make test`",
            pytrace=False,
        )
    return parse_env_file(Path(path).read_text())


@pytest.fixture(scope="module")
def bootstrap(infra: Any) -> str:
    servers: str = infra.kafka_bootstrap_servers
    return servers


def login(passwords: dict[str, str], principal: str, password: str | None = None) -> KafkaSecurity:
    """A service principal's SASL/SCRAM login, as the stack gives it to that service."""
    return KafkaSecurity(
        KAFKA_SECURITY_PROTOCOL,
        KAFKA_SASL_MECHANISM,
        principal,
        password if password is not None else passwords[kafka_password_variable(principal)],
    )


async def send_one(
    bootstrap: str, security: KafkaSecurity, topic: str, key: bytes, value: bytes | None
) -> None:
    """Produce one record with the service's own producer setup; raise what Kafka answers."""
    producer = make_producer(bootstrap, f"acl-test-{uuid.uuid4().hex[:8]}", security)
    try:
        async with asyncio.timeout(DENIED_WITHIN_S):
            await producer.start()
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


async def read_until_refused(consumer: AIOKafkaConsumer) -> None:
    """Start and fetch until Kafka refuses (raises) or the deadline passes (TimeoutError)."""
    async with asyncio.timeout(DENIED_WITHIN_S):
        await consumer.start()
        while True:
            await consumer.getmany(timeout_ms=500)


def an_event_record() -> tuple[bytes, bytes]:
    """A valid request event of an app no one else uses (the aggregator counts it harmlessly)."""
    record = encode_request(request_event(app_id=f"acl-test-{uuid.uuid4().hex[:8]}"), "acl-test")
    assert record.key is not None
    assert record.value is not None
    return record.key, record.value


async def test_a_gateway_writes_request_events(bootstrap: str, passwords: dict[str, str]) -> None:
    key, value = an_event_record()
    await send_one(bootstrap, login(passwords, "gateway"), REQUESTS_TOPIC, key, value)


async def test_a_gateway_cannot_write_app_states(bootstrap: str, passwords: dict[str, str]) -> None:
    # A record on capps.apps.v1 could re-enable a disabled app: only the registry may write it.
    key = f"acl-test-{uuid.uuid4().hex[:8]}".encode()
    with pytest.raises(TopicAuthorizationFailedError):
        await send_one(bootstrap, login(passwords, "gateway"), APPS_TOPIC, key, b"{}")


async def test_a_gateway_cannot_read_the_dead_letters(
    bootstrap: str, passwords: dict[str, str]
) -> None:
    consumer = AIOKafkaConsumer(
        REQUESTS_DLQ_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        **login(passwords, "gateway").client_options(),
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await read_until_refused(consumer)
    finally:
        await consumer.stop()


async def test_the_registry_writes_app_states_and_not_request_events(
    bootstrap: str, passwords: dict[str, str]
) -> None:
    registry = login(passwords, "registry")
    # A tombstone of an app that never existed: allowed, and changes nothing a gateway holds.
    await send_one(bootstrap, registry, APPS_TOPIC, f"acl-test-{uuid.uuid4().hex}".encode(), None)
    key, value = an_event_record()
    with pytest.raises(TopicAuthorizationFailedError):
        await send_one(bootstrap, registry, REQUESTS_TOPIC, key, value)


async def test_the_aggregator_cannot_write_request_events(
    bootstrap: str, passwords: dict[str, str]
) -> None:
    key, value = an_event_record()
    with pytest.raises(TopicAuthorizationFailedError):
        await send_one(bootstrap, login(passwords, "aggregator"), REQUESTS_TOPIC, key, value)


async def test_a_wrong_password_is_refused(
    bootstrap: str, passwords: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = login(passwords, "gateway", password=uuid.uuid4().hex)
    with pytest.raises(KafkaConnectionError):
        await send_one(bootstrap, wrong, REQUESTS_TOPIC, b"k", b"v")
    # aiokafka reports only "unable to bootstrap"; the broker's reason is in its log line.
    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials" in caplog.text
