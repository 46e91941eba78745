"""The page's SVG charts and what it works out from usage and audit: pure functions."""

from datetime import UTC, date, datetime
from xml.etree import ElementTree as ET

from capps_registry.web.charts import Bar, Marker, bar_chart, line_chart, scale, sparkline
from capps_registry.web.insights import (
    LimitUse,
    describe_change,
    peak_hour,
    peak_minute,
    permission_change,
    permission_markers,
    status_breakdown,
)
from capps_usage.series import UsagePoint

SVG = "{http://www.w3.org/2000/svg}"


def test_scale_fills_the_height_with_the_largest_value_and_keeps_zeros_flat() -> None:
    assert scale([0, 5, 10], 20) == [0.0, 10.0, 20.0]
    assert scale([0, 0], 20) == [0.0, 0.0]
    assert scale([], 20) == []


def test_sparkline_draws_one_point_per_value_inside_its_box() -> None:
    drawn = ET.fromstring(sparkline([0, 3, 6, 3], "12 requests", width=100, height=20))
    assert drawn.get("aria-label") == "12 requests"
    assert drawn.get("role") == "img"
    line = drawn.find(f"{SVG}polyline")
    assert line is not None
    points = [tuple(map(float, pair.split(","))) for pair in (line.get("points") or "").split()]
    assert len(points) == 4
    assert points[0] == (2.0, 18.0)  # zero sits on the bottom edge, inside the padding
    assert points[2][1] == 2.0  # the peak touches the top
    assert all(0 <= x <= 100 and 0 <= y <= 20 for x, y in points)


def test_bar_chart_has_a_bar_per_day_with_its_hover_text_and_the_peak_on_the_axis() -> None:
    bars = [Bar(0, "Nov 01", "2026-11-01: 0 requests"), Bar(1500, "Nov 02", "2026-11-02: 1,500")]
    drawn = ET.fromstring(bar_chart(bars, "Requests per day"))
    rects = drawn.findall(f"{SVG}rect")
    assert [rect.findtext(f"{SVG}title") for rect in rects] == [bar.title for bar in bars]
    heights = [float(rect.get("height") or 0) for rect in rects]
    assert heights[0] == 1.0  # a zero day keeps a hairline
    assert heights[1] > 100
    texts = [text.text for text in drawn.iter(f"{SVG}text")]
    assert "1,500" in texts
    assert "Nov 01" in texts
    assert "Nov 02" in texts


def test_bar_chart_marks_changes_at_their_day_and_drops_marks_outside_it() -> None:
    bars = [Bar(i, f"d{i}", f"day {i}") for i in range(3)]
    drawn = bar_chart(
        bars, "x", markers=[Marker(1, "Alert.Read.All removed"), Marker(7, "out of range")]
    )
    tree = ET.fromstring(drawn)
    marks = [group for group in tree.iter(f"{SVG}g") if group.get("class") == "marker"]
    assert len(marks) == 1
    assert marks[0].findtext(f"{SVG}circle/{SVG}title") == "Alert.Read.All removed"


def test_chart_text_is_escaped() -> None:
    drawn = bar_chart([Bar(1, "<b>", "<script>alert(1)</script>")], 'say "hi" & <go>')
    assert "<script>" not in drawn
    assert "&lt;script&gt;" in drawn
    ET.fromstring(drawn)  # still well-formed


def test_line_chart_is_one_area_and_one_line_over_all_values() -> None:
    values = [0] * 1439 + [7]
    drawn = ET.fromstring(line_chart(values, "per minute", first_label="a", last_label="b"))
    line = drawn.find(f"{SVG}polyline")
    assert line is not None
    assert len((line.get("points") or "").split()) == 1440
    assert len(drawn.findall(f"{SVG}path")) == 1
    assert "7" in [text.text for text in drawn.iter(f"{SVG}text")]


def test_permission_changes_become_one_marker_per_day_oldest_first() -> None:
    day = date(2026, 11, 30)
    events = [
        {
            "action": "app.update",
            "at": datetime(2026, 11, 30, 11, 0, tzinfo=UTC),
            "before": {"permissions": ["A", "B"]},
            "after": {"permissions": ["A"]},
        },
        {
            "action": "app.update",
            "at": datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
            "before": {"enabled": True, "permissions": ["A"]},
            "after": {"enabled": False, "permissions": ["A"]},
        },
        {
            "action": "app.create",
            "at": datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
            "before": None,
            "after": {"permissions": ["A", "B"]},
        },
        {
            "action": "app.create",
            "at": datetime(2026, 10, 1, 9, 0, tzinfo=UTC),
            "before": None,
            "after": {"permissions": ["C"]},
        },
    ]
    assert permission_markers(events, [date(2026, 11, 29), day]) == [
        Marker(
            1,
            "2026-11-30 09:00 UTC: permissions granted A, B\n"
            "2026-11-30 11:00 UTC: permissions removed B",
        )
    ]
    assert permission_change(events[1]) is None
    assert describe_change(["X"], ["Y", "Z"]) == "granted X; removed Y, Z"


def test_status_breakdown_and_peaks_of_a_minute_series() -> None:
    start = datetime(2026, 11, 30, 10, 58, tzinfo=UTC)
    points = [
        UsagePoint(start, requests=5, status_2xx=3, status_4xx=2, denied=1, throttled=1),
        UsagePoint(start.replace(minute=59), requests=7, status_2xx=7),
        UsagePoint(start.replace(hour=11, minute=0), requests=9, status_5xx=9),
    ]
    totals = status_breakdown(points)
    assert (totals.requests, totals.status_2xx, totals.status_4xx, totals.status_5xx) == (
        21,
        10,
        2,
        9,
    )
    assert (totals.denied, totals.throttled) == (1, 1)
    assert peak_minute(points) == (9, start.replace(hour=11, minute=0))
    assert peak_hour(points) == (12, start.replace(minute=0))
    assert peak_minute([UsagePoint(start)]) == (0, None)
    assert peak_hour([]) == (0, None)
    use = LimitUse(limit=100, peak=150, peak_at=start, current=25)
    assert (use.peak_share, use.current_share) == (1.5, 0.25)
