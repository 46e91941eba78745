"""Validation of admin API bodies, settings, tenant names and the permission check."""

from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from capps_catalog import load_catalog
from capps_registry.apps.schemas import AppCreate, AppList, AppUpdate, RateLimit
from capps_registry.apps.service import app_row, app_view, checked_permissions
from capps_registry.errors import ApiError, describe_validation_errors, pick_request_id
from capps_registry.models import Client
from capps_registry.settings import RegistrySettings
from capps_registry.tenants.service import InvalidTenantNameError, checked_tenant_name
from capps_usage.stats import AppStats, DayCount

CATALOG = Path(__file__).resolve().parents[3] / "config" / "catalog.yaml"


def test_rate_limit_defaults_and_bounds() -> None:
    assert RateLimit() == RateLimit(per_minute=100, per_hour=1500)
    assert RateLimit(per_minute=2_000_000, per_hour=50_000_000).per_hour == 50_000_000
    for bad in ({"per_minute": 0}, {"per_hour": -1}, {"per_minute": 10, "per_hour": 5}):
        with pytest.raises(ValidationError):
            RateLimit.model_validate(bad)


def test_app_create_trims_the_name_and_refuses_extras() -> None:
    body = AppCreate.model_validate({"name": "  x  ", "permissions": []})
    assert body.name == "x"
    assert body.description == ""
    with pytest.raises(ValidationError) as raised:
        AppCreate.model_validate({"name": "x", "permissions": [], "tenant_id": "t"})
    assert "tenant_id" in describe_validation_errors(raised.value.errors())


def test_descriptions_may_span_lines_but_not_hold_nul() -> None:
    assert (
        AppCreate.model_validate(
            {"name": "x", "permissions": [], "description": "a\nb\tc"}
        ).description
        == "a\nb\tc"
    )
    with pytest.raises(ValidationError):
        AppCreate.model_validate({"name": "x", "permissions": [], "description": "a\x00"})


def test_update_refuses_explicit_nulls() -> None:
    assert AppUpdate.model_validate({}).model_fields_set == set()
    with pytest.raises(ValidationError, match="enabled"):
        AppUpdate.model_validate({"enabled": None})


def test_validation_messages_name_the_field() -> None:
    errors = [{"loc": ("body", "rate_limit", "per_minute"), "msg": "must be > 0"}]
    assert describe_validation_errors(errors) == "rate_limit.per_minute: must be > 0"


def test_permissions_are_checked_against_the_catalog() -> None:
    catalog = load_catalog(CATALOG)
    assert checked_permissions(
        catalog, ["Machine.Isolate", "Alert.Read.All", "Alert.Read.All"]
    ) == [
        "Alert.Read.All",
        "Machine.Isolate",
    ]
    with pytest.raises(ApiError) as raised:
        checked_permissions(catalog, ["Alert.Read.All", "Nope"])
    assert raised.value.status == 400
    assert "Nope" in raised.value.message


def test_app_view_joins_stats() -> None:
    moment = datetime(2025, 5, 1, tzinfo=UTC)
    client = Client(
        "id", "t", "app", "n", "", True, ["b", "a"], 100, 1500, moment, moment, 1, moment
    )
    stats = AppStats(moment, 3, [DayCount(date(2025, 5, 1), 3)])
    view = app_view(client, stats)
    assert view.permissions == ["a", "b"]
    assert view.requests_24h == 3
    assert view.model_dump(mode="json")["trend_30d"] == [{"date": "2025-05-01", "requests": 3}]
    assert app_view(client, None).last_seen is None


@pytest.mark.parametrize("external", [None, "https://login.example/tenant/v2.0"])
@pytest.mark.parametrize("seen", [None, datetime(2025, 5, 1, 7, 8, 9, 123000, tzinfo=UTC)])
def test_a_list_row_is_the_json_of_the_app_view(
    external: str | None, seen: datetime | None
) -> None:
    created = datetime(2025, 4, 1, 1, 2, 3, tzinfo=UTC)
    client = Client(
        "id", "t", "app", "n", "d", False, ["b", "a"], 7, 70, created, created, 2, created, external
    )
    for stats in (
        None,
        AppStats(seen, 3, [DayCount(date(2025, 4, 30), 1), DayCount(date(2025, 5, 1), 2)]),
    ):
        row = orjson.loads(orjson.dumps(app_row(client, stats), option=orjson.OPT_UTC_Z))
        assert row == app_view(client, stats).model_dump(mode="json")
        # The document the list promises (AppList) accepts the row as it is.
        assert AppList.model_validate({"apps": [row], "next_cursor": None}).apps[0].id == "id"


def test_tenant_names() -> None:
    assert checked_tenant_name("  Contoso Ltd. ") == "Contoso Ltd."
    for bad in ("", " ", "-x", "a/b", "x" * 101, "a\nb"):
        with pytest.raises(InvalidTenantNameError):
            checked_tenant_name(bad)


def test_request_ids() -> None:
    assert pick_request_id("abc-1") == "abc-1"
    assert pick_request_id(None) != pick_request_id(None)
    assert pick_request_id("x" * 500) != "x" * 500
    assert pick_request_id("bad\nid") != "bad\nid"


@pytest.mark.parametrize("name", ["REGISTRY_KEY_ENCRYPTION_KEY", "REGISTRY_SECRET_PEPPER"])
def test_placeholder_secrets_are_refused_in_production(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for each in ("REGISTRY_KEY_ENCRYPTION_KEY", "REGISTRY_SECRET_PEPPER"):
        monkeypatch.setenv(each, f"a-real-{each.lower()}")
    monkeypatch.delenv(name)
    # Production also refuses the database's default password: give it a real one.
    monkeypatch.setenv("DATABASE_URL", "postgresql://capps:Xq7-vT9pL2mRw4sZ@db:5432/capps")
    assert getattr(RegistrySettings(environment="development"), name.lower())
    with pytest.raises(ValidationError, match=name):
        RegistrySettings(environment="production")
    monkeypatch.setenv(name, "changethis")
    with pytest.raises(ValidationError, match=name):
        RegistrySettings(environment="production")
    monkeypatch.setenv(name, "a-real-secret")
    assert getattr(RegistrySettings(environment="production"), name.lower()) == "a-real-secret"
    assert "a-real-secret" not in repr(RegistrySettings(environment="production"))


def test_a_listen_url_with_the_default_password_is_refused_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for each in ("REGISTRY_KEY_ENCRYPTION_KEY", "REGISTRY_SECRET_PEPPER"):
        monkeypatch.setenv(each, f"a-real-{each.lower()}")
    monkeypatch.setenv("DATABASE_URL", "postgresql://capps:Xq7-vT9pL2mRw4sZ@pgbouncer:6432/capps")
    monkeypatch.setenv("REGISTRY_LISTEN_DATABASE_URL", "postgresql://capps:capps@db:5432/capps")
    with pytest.raises(ValidationError, match="REGISTRY_LISTEN_DATABASE_URL"):
        RegistrySettings(environment="production")
    direct = "postgresql://capps:Xq7-vT9pL2mRw4sZ@db:5432/capps"
    monkeypatch.setenv("REGISTRY_LISTEN_DATABASE_URL", direct)
    settings = RegistrySettings(environment="production")
    assert settings.registry_listen_database_url == direct
    assert "Xq7" not in repr(settings)
