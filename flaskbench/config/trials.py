"""How many trials a run makes, in what order, and what it compares within itself.

A trial runs every cell (target x workload) once; each trial's cells run in an order shuffled
from `[load] seed`, so a drifting machine and passing neighbours spread over every target
instead of landing on one. `[load] repeats` is the number of trials, or "auto": trials are added
until every comparison the run makes is decided (or `[load] budget` is spent). What a run
compares is `[compare]`'s baseline against every other target, paired by trial, or, with a
sweep and a `[goal]`, the recommendation's pick against its runner-up.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flaskbench.config.problems import Problems, read_table, unknown_keys
from flaskbench.config.units import parse_duration, parse_share

# An "auto" run judges its comparisons after this many trials, and after each one more.
AUTO_FIRST_TRIALS = 3
DEFAULT_BUDGET_S = 1800.0
DEFAULT_THRESHOLD = 0.02
COMPARE_KEYS = {"baseline", "threshold"}


@dataclass(frozen=True)
class Trials:
    # Trials planned from the start ("auto": the first batch, judged once done).
    count: int
    auto: bool
    # With auto: no trial starts once the run has taken this long.
    budget_s: float | None
    # Every trial's order of cells comes from it (recorded in meta.json).
    seed: int


@dataclass(frozen=True)
class Comparing:
    """`[compare]`: the target every other one is compared with, trial by trial."""

    baseline: str
    # A verdict needs the ratio to move by at least this much (0.02: 2%).
    threshold: float


def parse_trials(
    load: Mapping[str, Any],
    cli_repeats: int | str | None,
    cli_seed: int | None,
    compares: bool,
    problems: Problems,
) -> Trials:
    """`repeats` (default: "auto" for a run that compares, else 1), `seed`, `budget`."""
    value = cli_repeats if cli_repeats is not None else load.get("repeats")
    if value is None:
        value = "auto" if compares else 1
    auto = value == "auto"
    if not auto and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        where = "--repeats" if cli_repeats is not None else None
        message = f'must be a number of trials, 1 or more, or "auto"; got {value!r}'
        if where:
            problems.cli(where, message)
        else:
            problems.add(("load", "repeats"), message)
        value = 1
    budget = _budget(load, auto, problems)
    seed = cli_seed if cli_seed is not None else load.get("seed", secrets.randbelow(2**31))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        problems.add(("load", "seed"), f"must be a whole number, 0 or more; got {seed!r}")
        seed = 0
    return Trials(AUTO_FIRST_TRIALS if auto else int(value), auto, budget, int(seed))


def _budget(load: Mapping[str, Any], auto: bool, problems: Problems) -> float | None:
    if "budget" not in load:
        return DEFAULT_BUDGET_S if auto else None
    if not auto:
        message = 'only applies with repeats = "auto"; remove it or set that'
        problems.add(("load", "budget"), message)
        return None
    try:
        seconds = parse_duration(load["budget"])
    except ValueError as exc:
        problems.add(("load", "budget"), str(exc))
        return None
    if seconds <= 0:
        problems.add(("load", "budget"), f"must be more than 0, got {load['budget']!r}")
        return None
    return seconds


def parse_compare(
    data: Mapping[str, Any], targets: Sequence[str], problems: Problems
) -> Comparing | None:
    """`[compare]` (absent: the run compares nothing by itself)."""
    if "compare" not in data:
        return None
    table = read_table(data, "compare", COMPARE_KEYS, problems)
    unknown_keys(table, COMPARE_KEYS, ("compare",), problems)
    baseline = table.get("baseline")
    if not isinstance(baseline, str) or baseline not in targets:
        problems.add(
            ("compare", "baseline"),
            f"must name one of the targets ({', '.join(targets)}), got {baseline!r}",
        )
        return None
    if len(targets) < 2:
        problems.add(("compare",), "compares the baseline with other targets; define at least two")
        return None
    try:
        threshold = parse_share(table.get("threshold", DEFAULT_THRESHOLD))
    except ValueError as exc:
        problems.add(("compare", "threshold"), str(exc))
        return None
    return Comparing(baseline, threshold)
