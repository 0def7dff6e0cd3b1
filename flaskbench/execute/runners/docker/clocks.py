"""The clocks of a cell's hosts, read through their engines just before it starts."""

from __future__ import annotations

from dataclasses import dataclass

from flaskbench.execute.engines import Engine, is_connection_error, read_clock, significant
from flaskbench.plan.placement import Placement


@dataclass(frozen=True)
class CellClocks:
    """The clocks of one cell, measured through the engines just before it starts."""

    # Seconds to add to a time of the target host's clock (gauge.csv) or of ours
    # (resources.csv) to read the master's, which defines the step windows.
    target_to_master_s: float
    ours_to_master_s: float
    # Each engine's clock minus ours, and how far off that reading may be.
    engines: dict[str, tuple[float, float]]


def measure_clocks(placement: Placement, by_spec: dict[str, Engine]) -> CellClocks:
    """The clocks of the target's and the master's hosts, through their engines."""
    engines = {}
    for spec in (placement.target, placement.master):
        engine = by_spec[spec]
        try:
            offset, uncertainty, _ = read_clock(engine.client)
        except Exception as exc:
            if is_connection_error(exc):
                raise engine.lost(exc) from None
            raise
        engines[spec] = (offset, uncertainty)
    (target, target_error), (master, master_error) = (
        engines[placement.target],
        engines[placement.master],
    )
    same_clock = placement.target == placement.master
    return CellClocks(
        target_to_master_s=0.0
        if same_clock
        else significant(master - target, master_error + target_error),
        ours_to_master_s=significant(master, master_error),
        engines=engines,
    )
