"""Opaque cursors of paginated lists: the sort key of the last item, base64url-encoded JSON."""

import base64
import binascii
import json
from typing import Any

MAX_CURSOR_LENGTH = 512


class BadCursorError(ValueError):
    """The cursor was not made by this API (or for another sort order)."""


def encode_cursor(kind: str, key: list[Any]) -> str:
    """A cursor that resumes after `key` in a list sorted by `kind`."""
    raw = json.dumps([kind, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> list[Any]:
    """The key a cursor resumes after; BadCursorError if malformed or made for another kind."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise BadCursorError("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found_kind, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursorError("cursor is malformed") from None
    if found_kind != kind or not isinstance(key, list):
        raise BadCursorError(f"cursor was not made for this list ({kind})")
    return key
