"""Client authentication parsing: Basic decoding (RFC 6749 §2.3.1) and method selection."""

import base64
from urllib.parse import quote_plus

import pytest

from capps_registry.oauth.client_auth import (
    ClientCredentials,
    authenticate_request,
    parse_basic,
)
from capps_registry.oauth.errors import OAuthError


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_basic_credentials_are_form_url_decoded() -> None:
    client_id, secret = "my:client", "a+b/c=d%e"
    header = basic(f"{quote_plus(client_id)}:{quote_plus(secret)}")
    assert parse_basic(header) == (client_id, secret)


def test_plus_in_basic_means_space() -> None:
    assert parse_basic(basic("id:a+b")) == ("id", "a b")


def test_scheme_is_case_insensitive() -> None:
    assert parse_basic("basic " + base64.b64encode(b"id:s").decode()) == ("id", "s")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!",
        basic("no-colon"),
        "Basic " + base64.b64encode(b"\xff:x").decode(),
    ],
)
def test_malformed_basic_is_invalid_client(header: str) -> None:
    with pytest.raises(OAuthError) as raised:
        parse_basic(header)
    assert raised.value.error == "invalid_client"
    assert raised.value.status == 401


def test_post_credentials() -> None:
    found = authenticate_request(None, {"client_id": "id", "client_secret": "s"})
    assert isinstance(found, ClientCredentials)
    assert (found.client_id, found.client_secret, found.method) == ("id", "s", "client_secret_post")


def test_basic_wins_and_may_repeat_the_same_client_id() -> None:
    found = authenticate_request(basic("id:s"), {"client_id": "id"})
    assert isinstance(found, ClientCredentials)
    assert found.method == "client_secret_basic"


@pytest.mark.parametrize(
    ("authorization", "form", "error"),
    [
        (None, {}, "invalid_client"),
        (None, {"client_id": "id"}, "invalid_client"),
        (basic("id:s"), {"client_secret": "s"}, "invalid_request"),
        (basic("id:s"), {"client_id": "other"}, "invalid_request"),
        (basic(":s"), {}, "invalid_client"),
        (None, {"client_id": "id", "client_secret": ""}, "invalid_client"),
        (None, {"client_id": "a\x00b", "client_secret": "s"}, "invalid_client"),
        (None, {"client_id": "x" * 600, "client_secret": "s"}, "invalid_client"),
    ],
)
def test_refusals(authorization: str | None, form: dict[str, str], error: str) -> None:
    with pytest.raises(OAuthError) as raised:
        authenticate_request(authorization, form)
    assert raised.value.error == error
    assert raised.value.status == (401 if error == "invalid_client" else 400)
