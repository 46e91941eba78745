"""How Kafka clients authenticate: one value every client of every service is built with.

Pure (no client is created here), so the options each protocol needs are unit-tested; the
settings (capps_kit.settings.KafkaSettings) read it from the environment.
"""

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Protocol, SASL mechanism and credentials, and the CA file for TLS."""

    protocol: KafkaSecurityProtocol = "PLAINTEXT"
    mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: Path | None = None

    @property
    def uses_sasl(self) -> bool:
        """Whether clients authenticate with a user name and password."""
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """Whether connections are encrypted."""
        return self.protocol in ("SSL", "SASL_SSL")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.uses_tls:
            # The system's CAs unless a private CA signed the brokers' certificates.
            options["ssl_context"] = ssl.create_default_context(
                cafile=str(self.cafile) if self.cafile else None
            )
        return options


PLAINTEXT = KafkaSecurity()
