"""Values every table writes the same way: durations and CPU lists."""

from __future__ import annotations

import re
from collections.abc import Sequence

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """'15s', '2m', '500ms', 30 -> seconds. Raises ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '15s' or '2m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ValueError(f"cannot read {value!r} as a duration; write it like '15s' or '2m'")
    return seconds


def parse_cpus(value: object) -> tuple[int, ...]:
    """'0', '0-3', '0,2' -> CPU ids."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", value):
        raise ValueError(f"cannot read {value!r} as a CPU list; write it like '0', '1-3' or '0,2'")
    cpus: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(cpus))


def format_cpus(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)
