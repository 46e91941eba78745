"""The page's forms become admin API bodies, and problems read in the form's own words."""

import pytest

from capps_registry.web.forms import FormError, app_create, app_update
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
