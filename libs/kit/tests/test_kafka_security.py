"""Kafka security settings: read from the environment, turned into every client's options."""

import ssl

import pytest
from pydantic import Field, ValidationError

from capps_kit.kafka_security import PLAINTEXT, KafkaSecurity
from capps_kit.settings import KafkaSettings, ServiceSettings

STRONG = "Tq4-xW9zLp2vRk7m"


class KafkaClient(ServiceSettings, KafkaSettings):
    """A service that talks to Kafka only, like the gateway."""

    token: str = Field(default="kR3-9vQzLw8_sT2xYp4m", repr=False)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "ENVIRONMENT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_plaintext_needs_no_options_beyond_the_protocol() -> None:
    assert PLAINTEXT.client_options() == {"security_protocol": "PLAINTEXT"}
    assert KafkaSettings().kafka_security == PLAINTEXT


def test_sasl_scram_over_plaintext_passes_the_credentials() -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "gateway", STRONG)
    assert security.client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gateway",
        "sasl_plain_password": STRONG,
    }
    assert STRONG not in repr(security)


def test_sasl_over_tls_adds_a_verifying_context() -> None:
    options = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "registry", STRONG).client_options()
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_the_environment_selects_sasl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "aggregator")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", STRONG)
    security = KafkaSettings().kafka_security
    assert security.client_options()["sasl_plain_username"] == "aggregator"
    assert security.mechanism == "SCRAM-SHA-256"


def test_sasl_without_credentials_is_refused_with_the_variables_named() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="gateway")


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        KafkaSettings(kafka_security_protocol="SASL_PLAIN")  # type: ignore[arg-type]


def test_production_refuses_a_weak_kafka_password() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_PASSWORD is a placeholder"):
        KafkaClient(
            environment="production",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="gateway",
            kafka_sasl_password="changeme",
        )
    accepted = KafkaClient(
        environment="production",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="gateway",
        kafka_sasl_password=STRONG,
    )
    assert STRONG not in repr(accepted)
