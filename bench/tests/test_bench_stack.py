"""The bench refuses to aim load at anything but this machine."""

import pytest

from bench.stack import require_loopback


@pytest.mark.parametrize(
    "address",
    [
        "http://127.0.0.1:8000",
        "postgresql://capps:capps@127.0.0.1:5432/capps",
        "redis://localhost:6379/0",
        "127.0.0.1:9092,127.0.0.1:9093",
    ],
)
def test_loopback_addresses_pass(address: str) -> None:
    assert require_loopback(address) == address


@pytest.mark.parametrize(
    "address", ["http://10.0.0.5:8000", "kafka.internal:9092", "127.0.0.1:9092,example.com:9092"]
)
def test_other_hosts_are_refused(address: str) -> None:
    with pytest.raises(SystemExit, match=r"only targets 127\.0\.0\.1"):
        require_loopback(address)
