"""Faust's own Kafka credentials say what the aggregator's aiokafka clients say."""

from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from capps_aggregator.app import broker_credentials, create_app
from capps_aggregator.settings import AggregatorSettings
from capps_kit.kafka_security import PLAINTEXT, KafkaSecurity

PASSWORD = "a-long-enough-password-1"


def test_sasl_scram_reaches_faust_as_the_same_client_options() -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "aggregator", PASSWORD)
    faust_options = credentials_to_aiokafka_auth(broker_credentials(security))
    assert faust_options == {**security.client_options(), "ssl_context": None}


def test_sasl_over_tls_keeps_the_verifying_context() -> None:
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "aggregator", PASSWORD)
    faust_options = credentials_to_aiokafka_auth(broker_credentials(security))
    assert faust_options["security_protocol"] == "SASL_SSL"
    assert faust_options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert faust_options["ssl_context"] is not None


def test_plaintext_gives_faust_no_credentials() -> None:
    assert broker_credentials(PLAINTEXT) is None


def test_the_worker_app_carries_the_settings_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "aggregator")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    settings = AggregatorSettings(aggregator_data_dir=tmp_path)
    app = create_app(settings)
    faust_options = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert faust_options["sasl_plain_username"] == "aggregator"
    assert faust_options["sasl_plain_password"] == PASSWORD
