"""A run's chart and the history chart are drawn as PNG files from result documents."""

from datetime import UTC, datetime
from pathlib import Path

from bench.charts import draw_history, draw_run
from bench.results import history, rate_entry, shape_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_run_and_history_charts_are_pngs(tmp_path: Path) -> None:
    shaped = shape_run(
        run="run-20261127T040000Z",
        at=datetime(2026, 11, 27, 4, 0, tzinfo=UTC),
        settings={},
        machine={"nproc": 2, "load_before": [1.0], "load_after": [1.5], "git": {"commit": "ab"}},
        scenarios={
            "upstream_direct": rate_entry("upstream_direct", [8_000.0, 7_000.0]),
            "through_gateway": rate_entry("through_gateway", [1_500.0]),
            "aggregator_ceiling": rate_entry("aggregator_ceiling", [80_000.0]),
            "aggregator_worker": rate_entry("aggregator_worker", [20_000.0]),
        },
        extra={},
    )
    draw_run(shaped, tmp_path / "run.png")
    draw_history(history([("a", shaped)]), tmp_path / "history.png")
    assert (tmp_path / "run.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "history.png").read_bytes().startswith(PNG_MAGIC)
