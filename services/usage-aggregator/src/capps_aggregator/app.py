"""The composition root: the faust worker hosting the batch consumer and the admin endpoint."""

from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.types.auth import CredentialsT

from capps_aggregator.consumer import BatchConsumer
from capps_aggregator.runtime import AggregatorRuntime
from capps_aggregator.settings import AggregatorSettings
from capps_kit.health import AdminApp, serve_admin
from capps_kit.kafka_security import KafkaSecurity

SERVICE_NAME = "usage-aggregator"


class _WorkerBoot(BootStrategy):
    """Faust runs the process (CLI, signals, tasks) but not its own consumer or producer.

    Faust's consumer would join the same group with its own assignor protocol, which the
    broker refuses next to the batch consumer's; nothing here uses faust's producer.
    """

    enable_kafka_consumer = False
    enable_kafka_producer = False


class AggregatorApp(faust.App):
    """The faust app of the aggregator."""

    BootStrategy = _WorkerBoot


def logging_config(level: str) -> dict[str, Any]:
    """Faust's worker sets up logging itself; this makes it the kit's JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "capps_kit.logging.JsonFormatter", "service": SERVICE_NAME},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def broker_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """Faust's own credentials object for the same security as every aiokafka client here."""
    options = security.client_options()
    if security.uses_sasl:
        return faust.SASLCredentials(
            username=security.username,
            password=security.password,
            mechanism=security.mechanism,
            ssl_context=options.get("ssl_context"),
        )
    if security.uses_tls:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def create_app(settings: AggregatorSettings) -> faust.App:
    """Build the worker: app id = consumer group `aggregator_group`, no faust web server."""
    brokers = [
        f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")
    ]
    app = AggregatorApp(
        settings.aggregator_group,
        broker=brokers,
        # Faust's consumer and producer are off (_WorkerBoot), but anything faust ever opens
        # to Kafka authenticates as the aggregator like its own clients do.
        broker_credentials=broker_credentials(settings.kafka_security),
        datadir=str(settings.aggregator_data_dir),
        # The admin endpoint (capps_kit AdminApp) owns the HTTP port instead.
        web_enabled=False,
        topic_disable_leader=True,
        logging_config=logging_config(settings.log_level),
    )
    runtime = AggregatorRuntime(settings)
    counting = BatchConsumer(runtime)

    async def consumer_assigned() -> None:
        if not counting.assigned():
            raise RuntimeError(f"no partition of {settings.aggregator_topic} assigned yet")

    async def topic_countable() -> None:
        if counting.topic_problem is not None:
            raise RuntimeError(counting.topic_problem)

    admin = AdminApp(
        {
            "postgres": runtime.check_postgres,
            "redis": runtime.check_redis,
            "consumer": consumer_assigned,
            "topic": topic_countable,
        }
    )

    async def count_requests() -> None:
        try:
            await counting.run()
        except Exception as exc:  # noqa: BLE001 - whatever it is, counting has stopped
            # Crash the worker rather than stay up looking healthy while counting nothing:
            # its supervisor restarts it, and the reason is in the log and the exit code.
            await app.crash(exc)

    async def admin_endpoint() -> None:
        await serve_admin(admin, settings.aggregator_host, settings.aggregator_port)

    # Faust starts its tasks once the worker is up and cancels them on stop.
    app.task(count_requests)
    app.task(admin_endpoint)
    return app
