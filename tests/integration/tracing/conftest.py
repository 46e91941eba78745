"""A trace crosses the gateway and the aggregator: both services' test rigs, and a collector."""

from collections.abc import Iterator
from pathlib import Path

import pytest

# The gateway's rig (JWKS, app states, gateway processes) and the aggregator's (a migrated
# throwaway database, topics, Redis, worker processes), shared rather than built again.
from tests.integration.aggregator.conftest import (  # noqa: F401
    hot,
    redis_url,
    run_id,
    topics,
    usage_db,
    worker_env,
    workers,
)
from tests.integration.gateway.conftest import (  # noqa: F401
    apps,
    apps_topic,
    events_topic,
    jwks_url,
    signer,
    start_gateway,
)
from tests.integration.tracing.collector import Collector, running_collector


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """A collector of this test writing the spans it receives to a file."""
    with running_collector(tmp_path) as found:
        yield found
