"""Draw a run's bars (each target beside its baseline) and the history of all runs as PNGs."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.results import BY_KEY, RATIOS, SCENARIOS, HistoryPoint

COLORS = {"baseline": "#9e9e9e", "reference": "#f0a030", "target": "#2f6fb5"}
GROUP_TITLES = {
    "http": "HTTP, 2xx req/s",
    "aggregator": "usage aggregator, events/s",
    "token": "token checks in process, checks/s",
    "edge": "one gateway process vs one nginx worker, static upstream, 2xx req/s",
    "tracing": "one gateway process, tracing off vs on, static upstream, 2xx req/s",
}
# Per line, so two targets of one group (worker, writer alone) stay apart.
HISTORY_COLORS = {
    "upstream_direct": COLORS["baseline"],
    "nginx_proxy": COLORS["reference"],
    "through_gateway": COLORS["target"],
    "aggregator_ceiling": COLORS["baseline"],
    "aggregator_worker": COLORS["target"],
    "aggregator_writer": "#5aa469",
}
HISTORY_SERIES = {
    "http": ("upstream_direct", "nginx_proxy", "through_gateway"),
    "aggregator": ("aggregator_ceiling", "aggregator_worker", "aggregator_writer"),
}


def draw_run(document: Mapping[str, Any], path: Path) -> None:
    """One horizontal bar chart per scenario group: medians, min..max whiskers, ratios."""
    scenarios: Mapping[str, Mapping[str, Any]] = document["scenarios"]
    groups = [g for g in dict.fromkeys(s.group for s in SCENARIOS) if _keys_of(g, scenarios)]
    figure = Figure(figsize=(10, 1.2 + 2.6 * max(len(groups), 1)), layout="constrained")
    axes = figure.subplots(max(len(groups), 1), 1, squeeze=False)[:, 0]
    for axis, group in zip(axes, groups, strict=False):
        _draw_group(axis, group, scenarios, document.get("ratios", {}))
    machine = document.get("machine", {})
    commit = (machine.get("git", {}).get("commit") or "unknown")[:10]
    figure.suptitle(
        f"{document['run']}  ·  {machine.get('nproc')} CPUs  ·  load "
        f"{_load(machine.get('load_before'))} -> {_load(machine.get('load_after'))}"
        f"  ·  {commit}",
        fontsize=10,
    )
    figure.savefig(path, dpi=110)


def _keys_of(group: str, scenarios: Mapping[str, Any]) -> list[str]:
    return [s.key for s in SCENARIOS if s.group == group and s.key in scenarios]


def _load(value: Sequence[float] | None) -> str:
    return f"{value[0]:.2f}" if value else "?"


def _draw_group(
    axis: Axes, group: str, scenarios: Mapping[str, Mapping[str, Any]], found: Mapping[str, float]
) -> None:
    keys = _keys_of(group, scenarios)
    entries = [scenarios[key] for key in keys]
    medians = [float(entry["median"]) for entry in entries]
    whiskers = [
        [m - float(e["min"]) for m, e in zip(medians, entries, strict=True)],
        [float(e["max"]) - m for m, e in zip(medians, entries, strict=True)],
    ]
    positions = list(range(len(keys)))
    axis.barh(
        positions,
        medians,
        xerr=whiskers,
        color=[COLORS[BY_KEY[key].role] for key in keys],
        capsize=4,
    )
    axis.set_yticks(positions, [BY_KEY[key].name for key in keys])
    axis.invert_yaxis()
    # Label past the whisker so the figure never sits on it.
    for position, median, entry in zip(positions, medians, entries, strict=True):
        axis.annotate(
            f" {median:,.0f}", (float(entry["max"]), position), va="center", ha="left", fontsize=9
        )
    axis.set_xlim(0, max(float(e["max"]) for e in entries) * 1.25)
    rounds = max(len(entry["rounds"]) for entry in entries)
    notes = [
        f"{label} {found[key]:.2f}"
        for key, label, top, _bottom in RATIOS
        if key in found and BY_KEY[top].group == group
    ]
    axis.set_title(
        f"{GROUP_TITLES[group]} (median of {rounds} round{'s' if rounds > 1 else ''},"
        " whiskers min..max)\n"
        # Two ratios a line keeps the title inside the figure.
        + "\n".join("    ".join(notes[i : i + 2]) for i in range(0, len(notes), 2)),
        fontsize=9,
        loc="left",
    )
    axis.grid(axis="x", alpha=0.3)


def draw_history(points: Sequence[HistoryPoint], path: Path) -> None:
    """Each target against its baselines over runs, oldest on the left."""
    groups = [
        group
        for group, keys in HISTORY_SERIES.items()
        if any(key in point.rates for point in points for key in keys)
    ]
    figure = Figure(figsize=(10, 1.5 + 3 * max(len(groups), 1)), layout="constrained")
    axes = figure.subplots(max(len(groups), 1), 1, squeeze=False)[:, 0]
    labels = [point.at[:16].replace("T", "\n") for point in points]
    for axis, group in zip(axes, groups, strict=False):
        for key in HISTORY_SERIES[group]:
            xs = [i for i, point in enumerate(points) if key in point.rates]
            if not xs:
                continue
            scenario = BY_KEY[key]
            axis.plot(
                xs,
                [points[i].rates[key] for i in xs],
                marker="o",
                color=HISTORY_COLORS[key],
                linestyle="--" if scenario.role != "target" else "-",
                label=scenario.name,
            )
        axis.set_xticks(range(len(points)), labels, fontsize=7)
        axis.set_ylim(bottom=0)
        axis.set_title(GROUP_TITLES[group] + " over runs", fontsize=10, loc="left")
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
