"""Conditional changes of an app (RFC 9110 §13.1.1): an ETag per configuration version, and
If-Match, so that two admins editing one app never silently undo each other's change."""

import re
from dataclasses import dataclass

from capps_registry.errors import ApiError
from capps_registry.models import Client

MAX_TAGS = 20
MAX_VERSION_DIGITS = 18  # a bigint's range; a longer number is no version of ours
# An entity tag: optional weakness, then a quoted string of visible characters but `"`.
_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e]*)"')


def etag(version: int) -> str:
    """The ETag of an app at this configuration version (its usage figures change without it)."""
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed If-Match: `*` (any current app), or the versions the caller last read."""

    header: str
    versions: frozenset[int] | None

    def admits(self, version: int) -> bool:
        """Whether an app at `version` may be changed (strong comparison: weak tags never do)."""
        return self.versions is None or version in self.versions


def version_number(text: str) -> int | None:
    """The app version an ETag's opaque part (or a form's field) names, None if none."""
    return int(text) if text.isdigit() and len(text) <= MAX_VERSION_DIGITS else None


def at_version(version: int) -> IfMatch:
    """The condition of a change made from what was read at `version` (the page's forms)."""
    return IfMatch(etag(version), frozenset({version}))


def parse_if_match(header: str | None) -> IfMatch | None:
    """The If-Match header, None when absent; a 400 naming the problem when malformed."""
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return IfMatch(text, None)
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > MAX_TAGS:
        raise _bad(f"If-Match holds {len(parts)} entity tags; at most {MAX_TAGS}")
    versions: set[int] = set()
    for part in parts:
        found = _TAG.fullmatch(part)
        if found is None:
            raise _bad(f'If-Match must be * or entity tags such as "7", not {part[:40]!r}')
        weak, opaque = found.groups()
        # A weak tag or one we never issued is well formed but matches no version.
        version = version_number(opaque)
        if weak is None and version is not None:
            versions.add(version)
    return IfMatch(text, frozenset(versions))


def require_match(client: Client, condition: IfMatch | None) -> None:
    """Refuse (412) a change whose If-Match names a version the app is no longer at."""
    if condition is None or condition.admits(client.version):
        return
    raise ApiError(
        412,
        "precondition_failed",
        f"the app changed since it was read: it is at ETag {etag(client.version)}, "
        f"If-Match names {condition.header[:100]}; read it again and re-apply the change",
        headers={"ETag": etag(client.version)},
    )


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_precondition", message)
