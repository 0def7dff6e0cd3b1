"""An open loop's own measurements, read from loadgen.json (format 2): per step, what was offered
and what the load generator could not do on time (docs/raw-data.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flaskbench.config.openloop import LATE_SHARE
from flaskbench.results.contract import LoadgenJson


class OpenLoopDataError(Exception):
    """The open loop's part of loadgen.json is damaged; the message names it."""


@dataclass(frozen=True)
class Offered:
    """One step of an open loop: its offered rate (requests per second), the requests due in
    its window, those sent late or not at all, the worst lag, and the requests still
    unanswered when the window ended (and the oldest one's age)."""

    rate: int
    scheduled: int
    late: int
    dropped: int
    max_lag_ms: float
    unfinished: int
    unfinished_oldest_ms: float

    @property
    def behind(self) -> bool:
        """The load generator fell behind: more than LATE_SHARE of the arrivals went out late
        or not at all, so the step measured it, not the server."""
        return self.scheduled > 0 and (self.late + self.dropped) / self.scheduled > LATE_SHARE


def offered_steps(loadgen: LoadgenJson, path: Path) -> dict[int, Offered]:
    """Per step index, what an open loop offered in its window; {} for a closed loop."""
    if "open_loop" not in loadgen:
        return {}
    try:
        arrivals = loadgen.get("arrivals") or {"seconds": [], "unfinished": []}
        unfinished = {int(u["step"]): u for u in arrivals["unfinished"]}
        found = {}
        for step in loadgen["steps"]:
            start, end = float(step["measure_start"]), float(step["measure_end"])
            inside = [a for a in arrivals["seconds"] if start <= a["t"] and a["t"] + 1 <= end]
            left = unfinished.get(int(step["index"]))
            found[int(step["index"])] = Offered(
                rate=int(step["rate"]),
                scheduled=sum(int(a["scheduled"]) for a in inside),
                late=sum(int(a["late"]) for a in inside),
                dropped=sum(int(a["dropped"]) for a in inside),
                max_lag_ms=max((float(a["max_lag_ms"]) for a in inside), default=0.0),
                unfinished=int(left["count"]) if left else 0,
                unfinished_oldest_ms=float(left["oldest_ms"]) if left else 0.0,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise OpenLoopDataError(f"{path}: damaged open-loop arrivals ({exc!r})") from None
    return found
