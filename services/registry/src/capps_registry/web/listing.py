"""The list's query (filter, sort, page) and how it applies to apps: pure, no I/O."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

SortKey = Literal["name", "id", "status", "last_seen", "requests", "trend"]
SORT_KEYS: tuple[SortKey, ...] = ("name", "id", "status", "last_seen", "requests", "trend")
STATUSES = ("all", "enabled", "disabled")
PAGE_SIZES = (25, 50, 100, 250, 1000)
DEFAULT_PAGE_SIZE = 50
MAX_FILTER_LENGTH = 100
# Columns whose natural first look is "largest first"; they are also the ones sorting needs
# every matching app's usage for.
DESCENDING_FIRST = frozenset({"last_seen", "requests", "trend"})
USAGE_SORTS = DESCENDING_FIRST

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ListEntry:
    """What the list filters and sorts on, for every app of the tenant."""

    id: str
    name: str
    enabled: bool
    last_seen: datetime | None
    requests_24h: int
    trend_total: int = 0
    """Requests in the 30-day trend; read only when the list is sorted by it."""


class ListQueryError(ValueError):
    """A query parameter of the list that cannot be understood; its text names it."""


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What the admin asked of the list."""

    name: str = ""
    status: str = "all"
    sort: SortKey = "name"
    descending: bool = False
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE

    def url(self, **changes: Any) -> str:
        """The list's URL for this query with `changes` applied; defaults are left out."""
        chosen = replace(self, **changes)
        params: dict[str, str | int] = {}
        if chosen.name:
            params["name"] = chosen.name
        if chosen.status != "all":
            params["status"] = chosen.status
        if chosen.sort != "name" or chosen.descending:
            params["sort"] = chosen.sort
            params["dir"] = "desc" if chosen.descending else "asc"
        if chosen.size != DEFAULT_PAGE_SIZE:
            params["size"] = chosen.size
        if chosen.page != 1:
            params["page"] = chosen.page
        return "/?" + urlencode(params) if params else "/"

    def sort_url(self, key: SortKey) -> str:
        """Sort by `key`; the column already sorted flips its direction."""
        if key == self.sort:
            return self.url(descending=not self.descending, page=1)
        return self.url(sort=key, descending=key in DESCENDING_FIRST, page=1)

    def aria_sort(self, key: SortKey) -> str:
        """The `aria-sort` value of a column header."""
        if key != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Read the list's query parameters; ListQueryError names any it cannot understand."""
    name = params.get("name", "").strip()
    if len(name) > MAX_FILTER_LENGTH:
        raise ListQueryError(f"the name filter is limited to {MAX_FILTER_LENGTH} characters")
    status = params.get("status", "all") or "all"
    if status not in STATUSES:
        raise ListQueryError(f"status must be one of {', '.join(STATUSES)}")
    sort = params.get("sort", "name") or "name"
    if sort not in SORT_KEYS:
        raise ListQueryError(f"sort must be one of {', '.join(SORT_KEYS)}")
    direction = params.get("dir", "asc") or "asc"
    if direction not in ("asc", "desc"):
        raise ListQueryError("dir must be asc or desc")
    page = _positive_int(params.get("page", "1"), "page")
    size = _positive_int(params.get("size", str(DEFAULT_PAGE_SIZE)), "size")
    if size not in PAGE_SIZES:
        raise ListQueryError(f"size must be one of {', '.join(map(str, PAGE_SIZES))}")
    return ListQuery(name, status, _sort_key(sort), direction == "desc", page, size)


def _sort_key(value: str) -> SortKey:
    for key in SORT_KEYS:
        if key == value:
            return key
    raise ListQueryError(f"sort must be one of {', '.join(SORT_KEYS)}")


def _positive_int(text: str, field: str) -> int:
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise ListQueryError(f"{field} must be a positive whole number")
    return int(text)


def _sort_value(key: SortKey) -> Callable[[ListEntry], Any]:
    if key == "name":
        return lambda app: (app.name.casefold(), app.id)
    if key == "id":
        return lambda app: app.id
    if key == "status":
        return lambda app: (not app.enabled, app.name.casefold())
    if key == "last_seen":
        return lambda app: (app.last_seen or _NEVER, app.name.casefold())
    if key == "requests":
        return lambda app: (app.requests_24h, app.name.casefold())
    return lambda app: (app.trend_total, app.name.casefold())


@dataclass(frozen=True, slots=True)
class ListPage:
    """The rows to show and where they sit among all matching apps."""

    rows: list[ListEntry]
    matching: int
    total: int
    page: int
    pages: int


def filter_entries(apps: Sequence[ListEntry], query: ListQuery) -> list[ListEntry]:
    """The apps whose name holds the filter (case-insensitive) and whose status matches."""
    wanted = query.name.casefold()
    return [
        app
        for app in apps
        if (not wanted or wanted in app.name.casefold())
        and (query.status == "all" or app.enabled == (query.status == "enabled"))
    ]


def page_of(matching: Sequence[ListEntry], query: ListQuery, total: int) -> ListPage:
    """Sort the matching apps and cut out the page asked for (the last one if beyond)."""
    ordered = sorted(matching, key=_sort_value(query.sort), reverse=query.descending)
    pages = max(1, -(-len(ordered) // query.size))
    page = min(query.page, pages)
    start = (page - 1) * query.size
    return ListPage(ordered[start : start + query.size], len(ordered), total, page, pages)


def apply_query(apps: Sequence[ListEntry], query: ListQuery) -> ListPage:
    """Filter by name and status, sort, and cut out one page."""
    return page_of(filter_entries(apps, query), query, len(apps))
