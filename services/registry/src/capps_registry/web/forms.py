"""From posted form fields to the admin API's request bodies, with messages a person reads."""

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from capps_registry.apps.preconditions import IfMatch, at_version, version_number
from capps_registry.apps.schemas import AppCreate, AppUpdate
from capps_registry.client_secrets.schemas import SecretCreate

FIELD_NAMES = {
    "name": "Name",
    "description": "Description",
    "permissions": "Permissions",
    "rate_limit": "Rate limit",
    "rate_limit.per_minute": "Calls per minute",
    "rate_limit.per_hour": "Calls per hour",
}


# What "Add a secret" offers: how long the new secret works (the API takes any time within two
# years); never, as before, stays the first choice.
SECRET_LIFETIMES_DAYS = (0, 30, 90, 180, 365, 730)


class FormError(ValueError):
    """The form cannot be accepted; the text says which field and why."""


def _one(fields: Mapping[str, Sequence[str]], name: str) -> str:
    values = fields.get(name) or [""]
    return values[0]


def _rate_limit(fields: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    limit: dict[str, Any] = {}
    for field, label in (("per_minute", "Calls per minute"), ("per_hour", "Calls per hour")):
        text = _one(fields, field).strip().replace(",", "").replace("_", "")
        if not text:
            raise FormError(f"{label}: enter a whole number")
        if not text.isdigit() or len(text) > 12:
            raise FormError(f"{label}: {text[:20]!r} is not a whole number")
        limit[field] = int(text)
    return limit


def describe(exc: ValidationError) -> str:
    """One line naming each bad field in the form's own words."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        label = FIELD_NAMES.get(location, location or "Form")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{label}: {message}")
    return "; ".join(parts)


def _app_fields(fields: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The register and edit forms carry the same fields."""
    return {
        "name": _one(fields, "name"),
        "description": _one(fields, "description"),
        "permissions": list(fields.get("permissions", [])),
        "rate_limit": _rate_limit(fields),
    }


def app_create(fields: Mapping[str, Sequence[str]]) -> AppCreate:
    """The body of a new app from the register form; FormError names what is wrong."""
    try:
        return AppCreate.model_validate(_app_fields(fields))
    except ValidationError as exc:
        raise FormError(describe(exc)) from None


def app_update(fields: Mapping[str, Sequence[str]]) -> AppUpdate:
    """The body of an edit: name, description, permissions and rate limits all at once."""
    try:
        return AppUpdate.model_validate(_app_fields(fields))
    except ValidationError as exc:
        raise FormError(describe(exc)) from None


def read_version(fields: Mapping[str, Sequence[str]]) -> IfMatch:
    """The app's version the edit form was drawn at: the change applies only while it holds."""
    version = version_number(_one(fields, "version"))
    if version is None:
        raise FormError("The form is out of date: reload the page and make the change again")
    return at_version(version)


def secret_create(fields: Mapping[str, Sequence[str]], now: datetime) -> SecretCreate:
    """The body of "Add a secret": its lifetime in days from now (0 or none: never expires)."""
    text = _one(fields, "expires_in_days").strip() or "0"
    if not text.isdigit() or int(text) not in SECRET_LIFETIMES_DAYS:
        raise FormError(f"Expires: choose one of the offered lifetimes, not {text[:20]!r}")
    days = int(text)
    return SecretCreate(expires_at=now + timedelta(days=days) if days else None)
