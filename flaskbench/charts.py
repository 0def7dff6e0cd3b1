"""PNG charts per workload, one line per target, x axis the user count."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullFormatter

from flaskbench.analyze import Point
from flaskbench.rundir import atomic_write_bytes


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
) -> Chart:
    """One line per target; optionally a dashed twin in the same colour and a min-max band."""
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    axes.set_title(title)
    axes.set_xlabel("concurrent users (zero think time)")
    axes.set_ylabel(ylabel)
    axes.set_xscale("log", base=2)
    axes.grid(True, which="major", alpha=0.3)
    for target, series in _series(points).items():
        line = _line(axes, series, solid, {"marker": "o", "label": target})
        colour = line.get_color() if line else None
        if dashed is not None:
            style = {"linestyle": "--", "color": colour, "alpha": 0.7}
            _line(axes, series, dashed, style | {"label": f"{target} {dashed_label}"})
        if band is not None and any(p.repeats > 1 for p in series):
            low, high = band
            xs = [p.users for p in series]
            axes.fill_between(
                xs,
                [low(p) or 0 for p in series],
                [high(p) or 0 for p in series],
                color=colour,
                alpha=0.15,
            )
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
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Chart(path, title)


def _line(axes: Axes, series: Sequence[Point], value: Value, style: dict[str, Any]) -> Any:
    pairs = [(p.users, v) for p in series if (v := value(p)) is not None]
    if not pairs:
        return None
    (line,) = axes.plot([u for u, _ in pairs], [v for _, v in pairs], **style)
    return line


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
            f"{workload}: throughput (dashed: expected ceiling)",
            "requests/s, median of repeats",
            lambda p: p.rps,
            lambda p: p.expected_rps,
            band=(lambda p: p.rps_min, lambda p: p.rps_max),
        ),
        _plot(
            mine,
            directory / f"{workload}-latency.png",
            f"{workload}: p50 (solid) and p99 (dashed) latency",
            "ms (log scale)",
            lambda p: p.p50_ms,
            lambda p: p.p99_ms,
            dashed_label="p99",
            log_y=True,
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
