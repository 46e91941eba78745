"""Compile the catalog's route templates into a matcher: method + raw path -> route, or None."""

from dataclasses import dataclass

from capps_catalog import Route

UNMATCHED = "(unmatched)"
"""The route label of calls to no catalog route: keeps metric and event cardinality bounded."""

_DOT_SEGMENTS = frozenset({".", "..", "%2e", "%2e%2e", ".%2e", "%2e."})
# Encoded `/`, `\\` and NUL: an upstream that decodes before routing would see other segments
# than the gateway matched (`/api/machines/x%2F..%2F..%2Falerts`), so such paths are refused.
_STEERING = ("%2f", "%5c", "%00", "\\")


def path_refusal(raw_path: str) -> str | None:
    """Why a raw path must not be forwarded, or None. Cheap when the path has no `%` or `\\`."""
    if "%" not in raw_path and "\\" not in raw_path:
        return None
    folded = raw_path.lower()
    for sequence in _STEERING:
        if sequence in folded:
            return f"the path contains {sequence!r} (an encoded slash, backslash or NUL)"
    return None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A matched route and the raw values of its path parameters, in template order."""

    route: Route
    params: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    route: Route
    # One entry per segment: the literal text, or None for a parameter.
    segments: tuple[str | None, ...]


def _segments(template: str) -> tuple[str | None, ...]:
    return tuple(None if part.startswith("{") else part for part in template.strip("/").split("/"))


class RouteTable:
    """Matches on the raw (still percent-encoded) path, the very path forwarded upstream.

    Matching the bytes that are forwarded means the gateway checks the permission of exactly
    the resource the upstream will serve; dot segments are refused as parameter values so a
    normalising upstream cannot be steered to another route.
    """

    def __init__(self, routes: list[Route]) -> None:
        self._exact: dict[tuple[str, str], RouteMatch] = {}
        self._templated: dict[tuple[str, int], list[_Compiled]] = {}
        for route in routes:
            segments = _segments(route.template)
            if None in segments:
                key = (route.method, len(segments))
                self._templated.setdefault(key, []).append(_Compiled(route, segments))
            else:
                self._exact[route.method, route.template] = RouteMatch(route, ())

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        """The route for this call, with its parameters; None for anything not in the catalog."""
        found = self._exact.get((method, raw_path))
        if found is not None:
            return found
        if not raw_path.startswith("/"):
            return None
        parts = raw_path[1:].split("/")
        candidates = self._templated.get((method, len(parts)))
        if candidates is None:
            return None
        for compiled in candidates:
            params = _match_segments(compiled.segments, parts)
            if params is not None:
                return RouteMatch(compiled.route, params)
        return None


def _match_segments(segments: tuple[str | None, ...], parts: list[str]) -> tuple[str, ...] | None:
    params: list[str] = []
    for expected, part in zip(segments, parts, strict=True):
        if expected is None:
            if not part or part.lower() in _DOT_SEGMENTS:
                return None
            params.append(part)
        elif expected != part:
            return None
    return tuple(params)
