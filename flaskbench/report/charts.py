"""PNG charts per workload, one line per target, x axis the user count."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullFormatter

from flaskbench.measure.analyze import Point
from flaskbench.results.rundir import atomic_write_bytes


@dataclass(frozen=True)
class Chart:
    path: Path
    title: str


def _series(points: Sequence[Point]) -> dict[str, list[Point]]:
    by_target: dict[str, list[Point]] = defaultdict(list)
    for point in sorted(points, key=lambda p: p.users):
        by_target[point.target].append(point)
    return by_target


Value = Callable[[Point], float | None]


def _plot(
    points: Sequence[Point],
    path: Path,
    title: str,
    ylabel: str,
    solid: Value,
    dashed: Value | None = None,
    dashed_label: str = "expected",
    band: tuple[Value, Value] | None = None,
    log_y: bool = False,
    dashed_band: tuple[Value, Value] | None = None,
    xlabel: str = "concurrent users (zero think time)",
) -> Chart:
    """One line per target; optionally a dashed twin in the same colour, and a band (a 95%
    interval) around either. The x axis is the staircase's steps (`users`: an open loop's
    offered rates, with its own `xlabel`)."""
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xscale("log", base=2)
    axes.grid(True, which="major", alpha=0.3)
    for target, series in _series(points).items():
        line = _line(axes, series, solid, {"marker": "o", "label": target})
        colour = line.get_color() if line else None
        if dashed is not None:
            style = {"linestyle": "--", "color": colour, "alpha": 0.7}
            _line(axes, series, dashed, style | {"label": f"{target} {dashed_label}"})
        for around in (band, dashed_band):
            if around is not None:
                _band(axes, series, around, colour)
    if log_y:
        axes.set_yscale("log", base=2 if dashed_label == "expected" else 10)
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
    else:
        axes.set_ylim(bottom=0)
    users = sorted({p.users for p in points})
    axes.set_xticks(users, [str(u) for u in users])
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return _save(figure, path, title)


def _band(axes: Axes, series: Sequence[Point], band: tuple[Value, Value], colour: Any) -> None:
    low, high = band
    spans = [
        (p.users, lo, hi)
        for p in series
        if (lo := low(p)) is not None and (hi := high(p)) is not None
    ]
    if spans:
        axes.fill_between(
            [u for u, _, _ in spans],
            [lo for _, lo, _ in spans],
            [hi for _, _, hi in spans],
            color=colour,
            alpha=0.15,
            linewidth=0,
        )


def _line(axes: Axes, series: Sequence[Point], value: Value, style: dict[str, Any]) -> Any:
    pairs = [(p.users, v) for p in series if (v := value(p)) is not None]
    if not pairs:
        return None
    (line,) = axes.plot([u for u, _ in pairs], [v for _, v in pairs], **style)
    return line


def _ci_band(metric: str) -> tuple[Value, Value]:
    def low(point: Point) -> float | None:
        interval = _interval(point, metric)
        return interval[0] if interval else None

    def high(point: Point) -> float | None:
        interval = _interval(point, metric)
        return interval[1] if interval else None

    return low, high


def _expected_inflight(point: Point) -> float | None:
    if point.expected_slots is None:
        return float(point.users)
    return float(min(point.users, point.expected_slots))


def workload_charts(points: Sequence[Point], workload: str, directory: Path) -> list[Chart]:
    """The four charts of one workload, written as PNG files into `directory`."""
    mine = [p for p in points if p.workload == workload]
    if not mine:
        return []
    return [
        _plot(
            mine,
            directory / f"{workload}-throughput.png",
            f"{workload}: throughput (dashed: expected ceiling; band: 95% interval)",
            "requests/s, median of repeats",
            lambda p: p.rps,
            lambda p: p.expected_rps,
            band=_ci_band("rps"),
        ),
        _plot(
            mine,
            directory / f"{workload}-latency.png",
            f"{workload}: p50 (solid) and p99 (dashed; band: 95% interval) latency",
            "ms (log scale)",
            lambda p: p.p50_ms,
            lambda p: p.p99_ms,
            dashed_label="p99",
            log_y=True,
            dashed_band=_ci_band("p99_ms"),
        ),
        _plot(
            mine,
            directory / f"{workload}-inflight.png",
            f"{workload}: peak requests in flight server-wide, measured vs expected",
            "requests in flight",
            lambda p: p.peak_inflight_server,
            _expected_inflight,
            log_y=True,
        ),
        _plot(
            mine,
            directory / f"{workload}-cpu.png",
            f"{workload}: target CPU",
            "% of one core",
            lambda p: p.target_cpu_pct,
        ),
        _plot(
            mine,
            directory / f"{workload}-memory.png",
            f"{workload}: server memory, all processes (solid) and the largest (dashed)",
            "MB (PSS: shared pages counted once)",
            lambda p: p.target_rss_mb,
            lambda p: p.worker_rss_mb,
            dashed_label="largest process",
        ),
    ]


OFFERED = "offered requests/s (an open loop: sent at their time, whatever the server does)"


def open_loop_charts(points: Sequence[Point], workload: str, directory: Path) -> list[Chart]:
    """An open-loop workload's charts: latency and throughput against the offered rate."""
    mine = [p for p in points if p.workload == workload]
    if not mine:
        return []
    return [
        _plot(
            mine,
            directory / f"{workload}-latency.png",
            f"{workload}: mean latency from when each request was due (dashed: the model's)",
            "ms (log scale)",
            lambda p: p.mean_ms,
            lambda p: p.expected_mean_ms,
            dashed_label="model",
            log_y=True,
            xlabel=OFFERED,
        ),
        _plot(
            mine,
            directory / f"{workload}-p99.png",
            f"{workload}: p50 (solid) and p99 (dashed; band: 95% interval) latency",
            "ms (log scale)",
            lambda p: p.p50_ms,
            lambda p: p.p99_ms,
            dashed_label="p99",
            log_y=True,
            dashed_band=_ci_band("p99_ms"),
            xlabel=OFFERED,
        ),
        _plot(
            mine,
            directory / f"{workload}-throughput.png",
            f"{workload}: completed requests/s (dashed: expected, the offered rate up to the "
            "ceiling)",
            "requests/s, median of repeats",
            lambda p: p.rps,
            lambda p: p.expected_rps,
            band=_ci_band("rps"),
            xlabel=OFFERED,
        ),
    ]


def _interval(point: Point, metric: str) -> tuple[float, float] | None:
    """A 95% interval to draw; none where it is open-ended (too few requests for a p99)."""
    interval = point.rps_ci if metric == "rps" else point.p99_ci
    if interval is None or not math.isfinite(interval.high):
        return None
    return interval.low, interval.high


_METRIC_LABELS = {"rps": "requests/s", "p99_ms": "p99 latency, ms"}


def overlay_chart(
    runs: Mapping[str, Sequence[Point]],
    workload: str,
    metric: str,
    order: Sequence[str],
    path: Path,
) -> Chart:
    """Small multiples, one panel per target (in `order`), one line per run with its 95%
    interval as a band."""
    present = {p.target for points in runs.values() for p in points if p.workload == workload}
    targets = [t for t in order if t in present]
    columns = min(3, max(1, len(targets)))
    rows = -(-len(targets) // columns)
    figure, grid = plt.subplots(
        rows, columns, figsize=(4 * columns, 3 * rows), dpi=100, squeeze=False
    )
    title = f"{workload}: {_METRIC_LABELS[metric]} per run (bands: 95% intervals)"
    figure.suptitle(title)
    for axes in grid.flat[len(targets) :]:
        axes.set_visible(False)
    for axes, target in zip(grid.flat, targets, strict=False):
        axes.set_title(target, fontsize="medium")
        axes.set_xscale("log", base=2)
        axes.grid(True, alpha=0.3)
        users: set[int] = set()
        for label, points in runs.items():
            series = sorted(
                (p for p in points if p.target == target and p.workload == workload),
                key=lambda p: p.users,
            )
            values = [(p.users, v) for p in series if (v := getattr(p, metric)) is not None]
            if not values:
                continue
            users |= {u for u, _ in values}
            (line,) = axes.plot(*zip(*values, strict=True), marker="o", label=label)
            bands = [(p.users, band) for p in series if (band := _interval(p, metric))]
            if bands:
                axes.fill_between(
                    [u for u, _ in bands],
                    [b[0] for _, b in bands],
                    [b[1] for _, b in bands],
                    color=line.get_color(),
                    alpha=0.2,
                )
        ordered = sorted(users)
        axes.set_xticks(ordered, [str(u) for u in ordered])
        if metric == "p99_ms":
            axes.set_yscale("log")
            axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axes.yaxis.set_minor_formatter(NullFormatter())
        else:
            axes.set_ylim(bottom=0)
    handles, labels = grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small")
    open_loop = any(
        p.offered_rps is not None
        for points in runs.values()
        for p in points
        if p.workload == workload
    )
    figure.supxlabel(OFFERED if open_loop else "concurrent users", y=0.06, fontsize="small")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(figure, path, title)


def _save(figure: Any, path: Path, title: str) -> Chart:
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Chart(path, title)


def headline_chart(
    points: Sequence[Point], workload: str, caps: Mapping[str, int | None], path: Path
) -> Chart:
    """The report's first chart: peak requests in flight per process against users, one line
    per target, dashed: what its worker model allows one process (None: no cap but the users)."""
    mine = [p for p in points if p.workload == workload and p.target in caps]
    title = f"{workload}: the most requests one process had in flight (dashed: its model's cap)"

    def expected(point: Point) -> float:
        cap = caps[point.target]
        return float(point.users if cap is None else min(point.users, cap))

    figure, axes = plt.subplots(figsize=(9, 4.2), dpi=100)
    axes.set_title(title, fontsize="medium")
    axes.set_xlabel("concurrent users (zero think time)")
    axes.set_ylabel("requests in flight per process")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log", base=2)
    axes.grid(True, which="major", alpha=0.3)
    series = _series(mine)
    drawn = [t for t in caps if t in series]
    for index, target in enumerate(drawn):
        # Models often coincide (1 per process): later lines thinner, with their own marker,
        # so a line under another still shows.
        cap = caps[target]
        style = {
            "marker": "os^Dvp"[index % 6],
            "linewidth": 1.5 + 2.0 * (len(drawn) - 1 - index) / max(1, len(drawn) - 1),
            "label": f"{target} (model: {'users' if cap is None else cap})",
        }
        line = _line(axes, series[target], lambda p: p.peak_inflight_process, style)
        colour = line.get_color() if line else None
        dashed = {"linestyle": "--", "color": colour, "alpha": 0.6}
        _line(axes, series[target], expected, dashed)
    users = sorted({p.users for p in mine})
    axes.set_xticks(users, [str(u) for u in users])
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return _save(figure, path, title)
