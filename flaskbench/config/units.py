"""Values every table writes the same way: durations and CPU lists."""

from __future__ import annotations

import math
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


def parse_share(value: object) -> float:
    """'2%', '0.5%', 0.02, '0.02' -> a share from 0 to below 1. Raises ValueError with a
    readable reason."""
    share = math.nan
    if isinstance(value, str):
        text = value.strip()
        try:
            share = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            share = math.nan
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    if not 0 <= share < 1:
        raise ValueError(
            f"cannot read {value!r} as a share; give a fraction below 1 such as 0.02, or a "
            "percentage such as 2%"
        )
    return share


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
# Binary multiples whichever way they are written: 64KB and 64KiB are both 65536 bytes.
_UNIT_BYTES = {
    None: 1,
    "B": 1,
    "KB": 1024,
    "KiB": 1024,
    "MB": 1024**2,
    "MiB": 1024**2,
    "GB": 1024**3,
    "GiB": 1024**3,
}


def parse_size(value: object) -> int:
    """'64KB', '1MB', '512', 4096 -> bytes (KB and KiB both 1024). Raises ValueError with a
    readable reason."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = float(value)
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = float(match.group(1)) * _UNIT_BYTES[match.group(2)]
    else:
        raise ValueError(f"cannot read {value!r} as a size; write it like '64KB' or '1MB'")
    if size < 1 or size != int(size):
        raise ValueError(f"{value!r} is not a whole number of bytes, 1 or more")
    return int(size)


def parse_rate(value: object) -> int:
    """'64KB/s', '1MB/s' -> bytes per second. Raises ValueError with a readable reason."""
    text = value.strip() if isinstance(value, str) else ""
    if not text.endswith("/s"):
        raise ValueError(f"cannot read {value!r} as a rate; write it like '64KB/s' or '1MB/s'")
    try:
        return parse_size(text.removesuffix("/s"))
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a rate; write it like '64KB/s' or '1MB/s'"
        ) from None


def format_size(size: float) -> str:
    """Bytes as the config writes them: 1048576 -> '1MB', 65536 -> '64KB', 1000 -> '1000B'."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{int(size // factor)}{unit}"
    return f"{size:g}B"
