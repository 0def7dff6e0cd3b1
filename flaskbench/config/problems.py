"""Problems with a config: each a complete line naming the key, the file and the line it was
written on (tomllib keeps no positions, so the lines are found again), and the checks every table
shares."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flaskbench.config.units import parse_duration

# Names end up in cell ids (`target--workload--r1`) and file names, so no "--" inside.
NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


NAME_RULE = "use lower-case letters and digits, joined by single '-' or '_'"


class ConfigError(Exception):
    """One or more problems with the config or the command line, each a complete line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class KeyLines:
    """Finds the line a key was written on, for error messages (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.split("#", 1)[0].strip()
            if header := re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]", stripped):
                table = _split_key(header.group(1))
                self._lines.setdefault(table, number)
            elif key := re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=", stripped):
                self._lines.setdefault((*table, *_split_key(key.group(1))), number)

    def line(self, path: Sequence[str]) -> int | None:
        for end in range(len(path), 0, -1):
            if (number := self._lines.get(tuple(path[:end]))) is not None:
                return number
        return None


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(
        part.strip().strip("\"'") for part in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", text)
    )


class Problems:
    def __init__(self, path: Path, lines: KeyLines) -> None:
        self._path = path
        self._lines = lines
        self.items: list[str] = []

    def add(self, key: Sequence[str], message: str) -> None:
        line = self._lines.line(key)
        where = f"{self._path}:{line}" if line else str(self._path)
        self.items.append(f"{where}: {'.'.join(key)}: {message}")

    def cli(self, option: str, message: str) -> None:
        self.items.append(f"command line: {option}: {message}")


def read_table(
    data: Mapping[str, Any], name: str, keys: set[str], problems: Problems
) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.add((name,), "must be a table, written as [" + name + "]")
        return {}
    unknown_keys(value, keys, (name,), problems)
    return value


def unknown_keys(
    table: Mapping[str, Any], known: set[str], prefix: tuple[str, ...], p: Problems
) -> None:
    for key in table:
        if key not in known:
            p.add((*prefix, key), f"unknown key; known keys here: {', '.join(sorted(known))}")


def integer(
    table: Mapping[str, Any],
    key: str,
    prefix: tuple[str, ...],
    problems: Problems,
    default: int,
    low: int = 1,
    high: int | None = None,
) -> int:
    value = table.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f"{low} or more"
        problems.add((*prefix, key), f"must be an integer {bound}, got {value!r}")
        return default
    return value


def flag(table: Mapping[str, Any], key: str, prefix: tuple[str, ...], problems: Problems) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        problems.add((*prefix, key), f"must be true or false, got {value!r}")
        return False
    return value


def whole_seconds(
    table: Mapping[str, Any],
    key: str,
    prefix: tuple[str, ...],
    problems: Problems,
    default: int,
    low: int = 1,
) -> int:
    """Durations that the schedule needs in whole seconds."""
    if key not in table:
        return default
    try:
        seconds = parse_duration(table[key])
    except ValueError as exc:
        problems.add((*prefix, key), str(exc))
        return default
    if seconds != int(seconds) or seconds < low:
        problems.add(
            (*prefix, key), f"must be a whole number of seconds, {low}s or more; got {table[key]!r}"
        )
        return default
    return int(seconds)


def named_tables(
    data: Mapping[str, Any], kind: str, example: str, problems: Problems
) -> Iterator[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """(name, key path, table) for each well-formed [kind.name] table; reports the others."""
    table = data.get(kind)
    if not isinstance(table, dict) or not table:
        problems.add((kind,), f"define at least one, e.g. [{kind}.{example}]")
        return
    for name, raw in table.items():
        key = (kind, name)
        if not NAME.fullmatch(name):
            problems.add(key, f"bad name; {NAME_RULE}")
        elif not isinstance(raw, dict):
            problems.add(key, f"must be a table, written as [{kind}.{name}]")
        else:
            yield name, key, raw
