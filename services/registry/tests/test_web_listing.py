"""The list's query: parsing, filtering, sorting and paging, as pure functions."""

from datetime import UTC, datetime

import pytest

from capps_registry.web.listing import (
    ListEntry,
    ListQuery,
    ListQueryError,
    apply_query,
    parse_list_query,
)
from capps_registry.web.wording import relative_time, share, utc_text

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _app(
    name: str, *, enabled: bool = True, requests: int = 0, seen_min: int | None = None
) -> ListEntry:
    return ListEntry(
        id=f"id-{name}",
        name=name,
        enabled=enabled,
        last_seen=None if seen_min is None else NOW.replace(minute=seen_min),
        requests_24h=requests,
        trend_total=requests,
    )


APPS = [
    _app("beta", requests=5, seen_min=10),
    _app("Alpha", enabled=False, requests=50, seen_min=5),
    _app("gamma", requests=1),
    _app("alphabet", requests=20, seen_min=30),
]


def test_defaults_and_round_trip_of_the_url() -> None:
    assert parse_list_query({}) == ListQuery()
    query = parse_list_query(
        {
            "name": " al ",
            "status": "enabled",
            "sort": "requests",
            "dir": "desc",
            "page": "2",
            "size": "25",
        }
    )
    assert query == ListQuery("al", "enabled", "requests", True, 2, 25)
    assert (
        parse_list_query(
            dict(pair.split("=") for pair in query.url().removeprefix("/?").split("&"))
        )
        == query
    )
    assert ListQuery().url() == "/"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"sort": "secret"}, "sort"),
        ({"status": "maybe"}, "status"),
        ({"dir": "up"}, "dir"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"size": "7"}, "size"),
        ({"name": "x" * 101}, "name"),
    ],
)
def test_bad_parameters_are_named(params: dict[str, str], named: str) -> None:
    with pytest.raises(ListQueryError, match=named):
        parse_list_query(params)


def test_filter_by_name_case_insensitively_and_by_status() -> None:
    found = apply_query(APPS, ListQuery(name="ALPHA"))
    assert [app.name for app in found.rows] == ["Alpha", "alphabet"]
    assert (found.matching, found.total) == (2, 4)
    disabled = apply_query(APPS, ListQuery(status="disabled"))
    assert [app.name for app in disabled.rows] == ["Alpha"]


@pytest.mark.parametrize(
    ("sort", "descending", "names"),
    [
        ("name", False, ["Alpha", "alphabet", "beta", "gamma"]),
        ("requests", True, ["Alpha", "alphabet", "beta", "gamma"]),
        ("last_seen", True, ["alphabet", "beta", "Alpha", "gamma"]),
        ("status", False, ["alphabet", "beta", "gamma", "Alpha"]),
        ("trend", False, ["gamma", "beta", "alphabet", "Alpha"]),
        ("id", False, ["id-Alpha", "id-alphabet", "id-beta", "id-gamma"]),
    ],
)
def test_sort_by_each_column(sort: str, descending: bool, names: list[str]) -> None:
    rows = apply_query(
        APPS, parse_list_query({"sort": sort, "dir": "desc" if descending else "asc"})
    ).rows
    assert [app.id if sort == "id" else app.name for app in rows] == names


def test_pages_cut_the_sorted_list_and_a_page_past_the_end_shows_the_last() -> None:
    many = [_app(f"app{i:04d}") for i in range(1, 121)]
    second = apply_query(many, ListQuery(page=2, size=50))
    assert (second.page, second.pages, len(second.rows)) == (2, 3, 50)
    assert second.rows[0].name == "app0051"
    last = apply_query(many, ListQuery(page=99, size=50))
    assert (last.page, [app.name for app in last.rows][-1]) == (3, "app0120")
    assert apply_query([], ListQuery()).pages == 1


def test_sorting_a_column_twice_flips_it_and_busy_columns_start_largest_first() -> None:
    query = ListQuery()
    assert query.sort_url("requests") == "/?sort=requests&dir=desc"
    assert query.sort_url("name") == "/?sort=name&dir=desc"
    assert query.aria_sort("name") == "ascending"
    assert query.aria_sort("requests") == "none"


def test_relative_and_exact_times() -> None:
    assert relative_time(None, NOW) == "never"
    assert relative_time(NOW.replace(second=30), NOW.replace(minute=0, second=59)) == "just now"
    assert relative_time(NOW.replace(hour=11, minute=59), NOW) == "1 minute ago"
    assert relative_time(NOW.replace(hour=9), NOW) == "3 hours ago"
    assert relative_time(NOW.replace(day=28), NOW) == "2 days ago"
    assert relative_time(NOW.replace(day=30, hour=14), NOW) == "in 2 hours"
    assert utc_text(NOW.replace(minute=31, second=7)) == "2026-11-30 12:31:07 UTC"


def test_shares_read_as_whole_percentages_and_small_ones_are_not_zero() -> None:
    assert share(0) == "0%"
    assert share(6 / 1500) == "<1%"
    assert share(0.06) == "6%"
    assert share(1.5) == "150%"
