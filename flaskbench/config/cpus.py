"""`[cpus]`: the CPUs the target and the load generator are pinned to, disjoint; and the CPUs of
the services beside the target (by default the target's own)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flaskbench.config.problems import Problems
from flaskbench.config.units import format_cpus, parse_cpus


@dataclass(frozen=True)
class CpuSplit:
    target: tuple[int, ...]
    load: tuple[int, ...]
    # The services' CPUs; () shares the target's (wherever the target is placed).
    services: tuple[int, ...] = ()


CPU_KEYS = {"target", "load", "services"}


def parse_cpu_split(table: Mapping[str, Any], problems: Problems) -> CpuSplit | None:
    available = sorted(os.sched_getaffinity(0))
    sides: dict[str, tuple[int, ...]] = {}
    for side in ("target", "load"):
        value = table.get(side, "auto")
        if value == "auto":
            continue
        try:
            sides[side] = parse_cpus(value)
        except ValueError as exc:
            problems.add(("cpus", side), str(exc))
            return None
        if extra := [c for c in sides[side] if c not in available]:
            problems.add(
                ("cpus", side),
                f"CPU(s) {format_cpus(extra)} not available here; this host offers "
                f"{format_cpus(available)}",
            )
            return None
    target = sides.get("target")
    load = sides.get("load")
    if target is None or load is None:
        if len(available) < 2:
            problems.add(
                ("cpus",),
                "pinning the target and the load generator apart needs 2 CPUs; this host has "
                f"{len(available)}",
            )
            return None
        half = max(1, len(available) // 2)
        target = target or tuple(c for c in available[:half] if c not in (load or ()))
        load = load or tuple(c for c in available if c not in target)
    if set(target) & set(load):
        problems.add(
            ("cpus", "load"),
            f"shares CPU(s) {format_cpus(sorted(set(target) & set(load)))} with cpus.target; "
            "give each side its own CPUs",
        )
        return None
    if not target or not load:
        problems.add(("cpus",), "each side needs at least one CPU")
        return None
    services = _services(table, load, problems, available)
    return None if services is None else CpuSplit(target, load, services)


def _services(
    table: Mapping[str, Any],
    load: tuple[int, ...],
    problems: Problems,
    available: list[int] | None = None,
) -> tuple[int, ...] | None:
    """cpus.services: "target" (the default) shares the target's CPUs, or a list of their own,
    never the load generator's."""
    value = table.get("services", "target")
    if value == "target":
        return ()
    try:
        cpus = parse_cpus(value)
    except ValueError as exc:
        problems.add(("cpus", "services"), f'{exc}, or "target" to share the target\'s')
        return None
    if available is not None and (extra := [c for c in cpus if c not in available]):
        problems.add(
            ("cpus", "services"),
            f"CPU(s) {format_cpus(extra)} not available here; this host offers "
            f"{format_cpus(available)}",
        )
        return None
    if shared := sorted(set(cpus) & set(load)):
        problems.add(
            ("cpus", "services"),
            f"shares CPU(s) {format_cpus(shared)} with cpus.load; the services run beside the "
            "target, on its CPUs or their own",
        )
        return None
    return cpus


def requested_cpus(table: Mapping[str, Any], problems: Problems) -> CpuSplit | None:
    """With [hosts], CPUs are checked against each host's own once its engine answers; an
    empty side is placed per host (a whole host, or half of one the two sides share)."""
    sides: dict[str, tuple[int, ...]] = {}
    for side in ("target", "load"):
        value = table.get(side, "auto")
        try:
            sides[side] = () if value == "auto" else parse_cpus(value)
        except ValueError as exc:
            problems.add(("cpus", side), str(exc))
            return None
    services = _services(table, sides["load"], problems)
    return None if services is None else CpuSplit(sides["target"], sides["load"], services)
