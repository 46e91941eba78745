"""How times and numbers read on the page: relative times with the exact UTC time beside."""

from datetime import UTC, datetime, timedelta

_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60))


def relative_time(moment: datetime | None, now: datetime) -> str:
    """'never', 'just now', '5 minutes ago', '3 days ago', or 'in …' for the future."""
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now"
    for unit, size in _UNITS:
        if seconds >= size:
            count = seconds // size
            words = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {words}" if ahead else f"{words} ago"
    return "just now"


EXPIRY_WARNING = timedelta(days=30)
"""How long before an app's last secret expires the page starts saying so."""


def secrets_warning(end: datetime | None, now: datetime) -> str | None:
    """'Secrets expired' or 'Secret expires in 5 days' once the app's last secret is near its
    end (EXPIRY_WARNING); None while one never expires or the end is further off."""
    if end is None or end - now > EXPIRY_WARNING:
        return None
    if end <= now:
        return "Secrets expired"
    return f"Secret expires {relative_time(end, now)}"


def share(part: float) -> str:
    """A share as a whole percentage; a small but non-zero share reads '<1%', not '0%'."""
    if 0 < part < 0.005:
        return "<1%"
    return f"{part:.0%}"


def utc_text(moment: datetime | None) -> str:
    """The exact time in UTC, to the second: '2026-11-30 10:31:07 UTC'."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_text(moment: datetime | None) -> str:
    """RFC 3339 in UTC for a `<time datetime>` attribute."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
