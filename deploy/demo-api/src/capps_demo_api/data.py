"""Deterministic sample alerts and machines, shaped like a security platform's API objects."""

from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
_SEVERITIES = ("Informational", "Low", "Medium", "High")
_CATEGORIES = ("Malware", "SuspiciousActivity", "CredentialAccess", "Execution", "Persistence")
_OS = ("Windows11", "Windows10", "WindowsServer2022", "Linux", "macOS")
_RISK = ("None", "Low", "Medium", "High")

ALERT_COUNT = 25
MACHINE_COUNT = 12


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def machine_id(index: int) -> str:
    """The stable id of the index-th sample machine."""
    return f"m-{index:04d}"


def alert_id(index: int) -> str:
    """The stable id of the index-th sample alert."""
    return f"da-{index:06d}"


def build_machines() -> dict[str, dict[str, Any]]:
    """The sample machines, keyed by id."""
    machines: dict[str, dict[str, Any]] = {}
    for index in range(1, MACHINE_COUNT + 1):
        ident = machine_id(index)
        machines[ident] = {
            "id": ident,
            "computerDnsName": f"host-{index:02d}.contoso.local",
            "osPlatform": _OS[index % len(_OS)],
            "lastIpAddress": f"10.0.{index // 250}.{index % 250 + 1}",
            "healthStatus": "Active",
            "riskScore": _RISK[index % len(_RISK)],
            "exposureLevel": _RISK[(index + 1) % len(_RISK)],
            "isolated": False,
            "firstSeen": _stamp(_EPOCH - timedelta(days=90 + index)),
            "lastSeen": _stamp(_EPOCH - timedelta(minutes=7 * index)),
        }
    return machines


def build_alerts() -> dict[str, dict[str, Any]]:
    """The sample alerts, keyed by id; each points at one sample machine."""
    alerts: dict[str, dict[str, Any]] = {}
    for index in range(1, ALERT_COUNT + 1):
        ident = alert_id(index)
        created = _EPOCH - timedelta(hours=3 * index)
        alerts[ident] = {
            "id": ident,
            "title": f"Suspicious process activity #{index}",
            "severity": _SEVERITIES[index % len(_SEVERITIES)],
            "category": _CATEGORIES[index % len(_CATEGORIES)],
            "status": "New" if index % 3 else "InProgress",
            "classification": None,
            "determination": None,
            "assignedTo": None,
            "machineId": machine_id(index % MACHINE_COUNT + 1),
            "alertCreationTime": _stamp(created),
            "lastUpdateTime": _stamp(created + timedelta(minutes=20)),
            "comments": [],
        }
    return alerts
