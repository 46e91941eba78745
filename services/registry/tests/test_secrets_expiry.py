"""When an app's credentials end, and what the page says as that time comes near."""

from datetime import UTC, datetime, timedelta

from capps_registry.models import secrets_expire_at
from capps_registry.web.wording import EXPIRY_WARNING, secrets_warning

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_the_last_secret_to_expire_ends_the_credentials_and_a_lasting_one_never() -> None:
    soon, later = NOW + timedelta(days=3), NOW + timedelta(days=40)
    assert secrets_expire_at([soon, later]) == later
    assert secrets_expire_at([soon]) == soon
    assert secrets_expire_at([soon, None]) is None
    assert secrets_expire_at([]) is None
    assert secrets_expire_at(iter([later, soon])) == later


def test_the_page_warns_within_thirty_days_and_says_when_they_have_expired() -> None:
    assert secrets_warning(None, NOW) is None
    assert secrets_warning(NOW + EXPIRY_WARNING + timedelta(seconds=1), NOW) is None
    assert secrets_warning(NOW + EXPIRY_WARNING, NOW) == "Secret expires in 30 days"
    assert secrets_warning(NOW + timedelta(hours=5), NOW) == "Secret expires in 5 hours"
    assert secrets_warning(NOW, NOW) == "Secrets expired"
    assert secrets_warning(NOW - timedelta(days=2), NOW) == "Secrets expired"
