"""`[goal]`: what a recommended target must hold: p99 latency at a concurrency (or, for open-loop
workloads, at an offered rate), within budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flaskbench.config.problems import Problems, read_table


@dataclass(frozen=True)
class Goal:
    """What a recommended target must hold: p99 latency at a concurrency, within budgets."""

    p99_ms: float
    users: int
    # Memory of the whole server (all its processes), None: no budget.
    max_rss_mb: float | None
    # Share of requests that may fail (0 to 1).
    max_error_rate: float
    # The offered rate (requests/s) open-loop workloads must hold the p99 at (None: no goal
    # for them).
    rate: int | None = None


GOAL_KEYS = {"p99_ms", "users", "rate", "max_rss_mb", "max_error_rate"}


def parse_goal(
    data: Mapping[str, Any],
    steps: tuple[int, ...] | None,
    rates: tuple[tuple[int, ...], ...],
    problems: Problems,
) -> Goal | None:
    """[goal]: what a recommended target must hold (absent: no recommendation)."""
    if "goal" not in data:
        return None
    table = read_table(data, "goal", GOAL_KEYS, problems)
    before = len(problems.items)
    p99 = table.get("p99_ms")
    if isinstance(p99, bool) or not isinstance(p99, int | float) or p99 <= 0:
        problems.add(("goal", "p99_ms"), f"required: the p99 latency goal in ms, got {p99!r}")
    top = steps[-1] if steps else 1
    users = table.get("users", top)
    if steps and users not in steps:
        problems.add(
            ("goal", "users"),
            f"must be one of the staircase's user counts ({', '.join(map(str, steps))}), "
            f"got {users!r}",
        )
    rate = _rate(table, rates, problems)
    budget = table.get("max_rss_mb")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0
    ):
        problems.add(("goal", "max_rss_mb"), f"must be a positive number of MB, got {budget!r}")
    errors = table.get("max_error_rate", 0)
    if isinstance(errors, bool) or not isinstance(errors, int | float) or not 0 <= errors < 1:
        problems.add(
            ("goal", "max_error_rate"),
            f"must be a share from 0 to below 1 (0.01 = 1%), got {errors!r}",
        )
    if len(problems.items) > before:
        return None
    return Goal(
        float(p99),  # type: ignore[arg-type]
        int(users),
        float(budget) if budget else None,
        float(errors),
        rate,
    )


def _rate(
    table: Mapping[str, Any], rates: tuple[tuple[int, ...], ...], problems: Problems
) -> int | None:
    """`rate`: one of the rates every open-loop workload offers."""
    if "rate" not in table:
        return None
    rate = table["rate"]
    if not rates:
        problems.add(
            ("goal", "rate"),
            "applies to open-loop workloads (rates), and this config has none; use users",
        )
        return None
    common = sorted(set.intersection(*(set(r) for r in rates)))
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in common:
        offered = ", ".join(map(str, common)) or "none: the workloads' rates share none"
        problems.add(
            ("goal", "rate"),
            f"must be a rate every open-loop workload offers ({offered}), got {rate!r}",
        )
        return None
    return rate
