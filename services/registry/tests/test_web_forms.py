"""The page's forms become admin API bodies, and problems read in the form's own words."""

from datetime import UTC, datetime, timedelta

import pytest

from capps_registry.web.forms import FormError, app_create, app_update, secret_create
from capps_registry.web.guard import tokens_match
from capps_registry.web.sessions import KEY_PREFIX, session_key


def _form(**fields: str | list[str]) -> dict[str, list[str]]:
    return {name: value if isinstance(value, list) else [value] for name, value in fields.items()}


def test_a_register_form_becomes_an_app_create_body() -> None:
    body = app_create(
        _form(
            name=" SIEM connector ",
            description="",
            permissions=["Alert.Read.All", "Machine.Read.All"],
            per_minute="1,000",
            per_hour="60_000",
        )
    )
    assert body.name == "SIEM connector"
    assert body.permissions == ["Alert.Read.All", "Machine.Read.All"]
    assert (body.rate_limit.per_minute, body.rate_limit.per_hour) == (1000, 60000)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "", "per_minute": "100", "per_hour": "1500"}, "Name:"),
        ({"name": "x", "per_minute": "ten", "per_hour": "1500"}, "Calls per minute: 'ten'"),
        ({"name": "x", "per_minute": "", "per_hour": "1500"}, "Calls per minute: enter"),
        ({"name": "x", "per_minute": "100", "per_hour": "50"}, "per_hour must be at least"),
        ({"name": "x", "per_minute": "0", "per_hour": "50"}, "Calls per minute"),
    ],
)
def test_form_problems_name_the_field(fields: dict[str, str], says: str) -> None:
    with pytest.raises(FormError, match=says):
        app_create(_form(**fields))
    if "per_hour must" not in says:  # an edit's limits are checked against the stored ones
        with pytest.raises(FormError, match=says):
            app_update(_form(**fields))


def test_csrf_tokens_compare_exactly_and_refuse_absence() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match("abc", "")
    assert not tokens_match("", "")
    assert not tokens_match("abc", None)


def test_the_session_store_keeps_a_hash_of_the_cookie_never_the_cookie() -> None:
    key = session_key("cookie-value")
    assert key.startswith(KEY_PREFIX)
    assert "cookie-value" not in key
    assert key == session_key("cookie-value")
    assert key != session_key("cookie-valuf")


def test_add_a_secret_takes_an_offered_lifetime_in_days_or_never() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert secret_create(_form(expires_in_days="90"), now).expires_at == now + timedelta(days=90)
    assert secret_create(_form(expires_in_days="730"), now).expires_at == now + timedelta(days=730)
    assert secret_create(_form(expires_in_days="0"), now).expires_at is None
    assert secret_create(_form(), now).expires_at is None


@pytest.mark.parametrize("days", ["7", "-30", "90.5", "lots", "99999999999999999999"])
def test_a_lifetime_not_offered_is_named_in_the_form_s_words(days: str) -> None:
    with pytest.raises(FormError, match="Expires: choose one of the offered lifetimes"):
        secret_create(_form(expires_in_days=days), datetime.now(UTC))
