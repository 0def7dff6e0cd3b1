"""Compare runs step by step, with a verdict only where the difference is significant.

The first run is the baseline; every other run is compared with it. Steps are matched by
target, workload and user count. For each matched step and metric (throughput, p99 latency) the
ratio other / baseline gets a 95% interval from the two runs' own bootstrap replicates, drawn
independently, and a verdict: faster or slower only when the interval excludes 1 and the ratio
moves by at least the threshold; otherwise the same. Runs are read from their directories only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flaskbench.config.trials import DEFAULT_THRESHOLD
from flaskbench.config.units import parse_cpus, parse_share
from flaskbench.measure.analyze import Analysis, Knee, Point, Row, StepKey, analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.measure.stats import (
    FloatArray,
    Interval,
    Replicates,
    paired_ratio,
    ratio_interval,
    unpaired_ratio,
)
from flaskbench.results.rundir import open_run_dir

METRICS = ("rps", "p99_ms")
VERDICTS = ("faster", "slower", "same")
# Metadata in the order a reader looks for an explanation; the first differences make labels.
_LABEL_ORDER = (
    "machine",
    "CPU model",
    "cores per side",
    "runner",
    "packages.",
    "git",
    "python",
    "targets.",
)
_NAMED_KEYS = {
    "machine.model.product": "machine",
    "machine.model.vendor": "machine vendor",
    "machine.cpu_model": "CPU model",
    "machine.cpu_count": "CPUs on the host",
    "machine.cpufreq.driver": "CPU frequency driver",
    "machine.cpufreq.governor": "CPU frequency governor",
    "machine.kernel": "kernel",
    "machine.memory_gib": "memory GiB",
    "runner.name": "runner",
    "git.commit": "git",
    "git.dirty": "git modified",
    "tool.version": "flaskbench",
    "staircase.warmup_s": "warmup s",
    "staircase.measure_s": "measured s",
    "staircase.users": "users",
    "repeats": "repeats",
    "locust_workers": "Locust workers",
    "python": "python",
}
# Metadata that differs between any two runs and explains nothing.
_IGNORED = (
    "run_id",
    "started",
    "ended",
    "files",
    "outputs",
    "cells",
    "sessions",
    "overrides",
    "config_file",
    "config",
    "orchestrator_cpus",
    "workloads",
    "cpus",
    "machine.cpus_available",
    "runner.reason",
    "runner.details.python",
    "runner.details.packages",
    "targets",
)


class CompareError(Exception):
    """Runs that cannot be compared as asked; the message says which and why."""


@dataclass(frozen=True)
class Side:
    path: Path
    label: str
    analysis: Analysis

    @property
    def run_id(self) -> str:
        return self.analysis.data.run_id


def step_load(users: int, offered: bool) -> str:
    """A step as a reader names it: its users, or an open loop's offered rate (which `users`
    holds)."""
    return f"{users} req/s offered" if offered else f"{users} users"


@dataclass(frozen=True)
class StepComparison:
    """One metric of one matched step: baseline against one other run."""

    target: str
    workload: str
    users: int
    metric: str
    baseline_label: str
    other_label: str
    baseline: float | None
    other: float | None
    baseline_ci: Interval | None
    other_ci: Interval | None
    ratio: float | None
    ci: Interval | None
    verdict: str
    # Flags of either side: a step flagged in either run is not a valid comparison.
    flags: tuple[str, ...]
    # What the interval rests on: the trials of both sides ("paired": trial by trial, both
    # sides in the same trials of one run), or with a single trial on a side, the seconds of
    # its window; and how many trials.
    basis: str = "seconds"
    trials: int = 1
    # A cause the harness measured that differs between the sides (connections spread
    # differently over workers), said beside the verdict.
    note: str = ""
    # An open loop's step: `users` holds the rate offered (requests per second).
    offered: bool = False

    @property
    def load(self) -> str:
        return step_load(self.users, self.offered)

    @property
    def valid(self) -> bool:
        return not self.flags and self.ratio is not None

    def decided(self, threshold: float) -> bool:
        """Whether more trials could still change the verdict: not once the interval is clear
        of 1 by the threshold (different), or inside the threshold around 1 (the same)."""
        if self.ci is None:
            return False
        different = not self.ci.contains(1.0) and abs((self.ratio or 1.0) - 1) >= threshold
        same = 1 - threshold <= self.ci.low and self.ci.high <= 1 + threshold
        return different or same


@dataclass(frozen=True)
class Answer:
    """What one run says about one target on one workload."""

    peak_inflight_process: int | None
    peak_inflight_server: int | None
    knee_users: int | None
    peak_users: int | None
    peak_rps: float | None
    peak_rps_ci: Interval | None
    # The peak step's flags: a flagged peak makes a doubtful saturation throughput.
    peak_flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnswerComparison:
    target: str
    workload: str
    baseline_label: str
    other_label: str
    baseline: Answer
    other: Answer
    ratio: float | None
    ci: Interval | None
    verdict: str

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.baseline.peak_flags, *self.other.peak_flags)))


@dataclass(frozen=True)
class Difference:
    """One piece of metadata that is not the same in every run: its value per run."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    sides: tuple[Side, ...]
    threshold: float
    differences: tuple[Difference, ...]
    steps: tuple[StepComparison, ...]
    answers: tuple[AnswerComparison, ...]
    # Per run label: the target x workload x users steps no other run has.
    unmatched: Mapping[str, tuple[StepKey, ...]]

    @property
    def baseline(self) -> Side:
        return self.sides[0]


def verdict(metric: str, ratio: float | None, ci: Interval | None, threshold: float) -> str:
    """faster or slower only when the interval excludes 1 and the change reaches the threshold;
    faster means more throughput or less latency."""
    if ratio is None or ci is None or ci.contains(1.0) or abs(ratio - 1) < threshold:
        return "same"
    better = ratio > 1 if metric == "rps" else ratio < 1
    return "faster" if better else "slower"


def load_sides(paths: Sequence[Path], labels: Sequence[str] | None) -> list[Side]:
    if len(paths) < 2:
        raise CompareError("compare needs at least two run directories")
    if labels and len(labels) != len(paths):
        raise CompareError(
            f"--label given {len(labels)} times for {len(paths)} runs; give one per run, in order"
        )
    analyses = [analyze_run(load_run(open_run_dir(path))) for path in paths]
    check_workloads(paths, analyses)
    names = list(labels) if labels else default_labels([a.data.meta for a in analyses])
    return [Side(p, n, a) for p, n, a in zip(paths, names, analyses, strict=True)]


def check_workloads(paths: Sequence[Path], analyses: Sequence[Analysis]) -> None:
    """A workload name must mean the same requests in every run, or its steps cannot match."""
    first: dict[str, tuple[Path, str]] = {}
    for path, analysis in zip(paths, analyses, strict=True):
        for name, workload in analysis.data.workloads.items():
            seen = first.setdefault(name, (path, workload.path))
            if seen[1] != workload.path:
                raise CompareError(
                    f"workload {name!r} is {seen[1]} in {seen[0]} but {workload.path} in {path}; "
                    "runs whose workloads share a name must define them alike (rename one of them)"
                )


def compare(sides: Sequence[Side], threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    baseline = sides[0]
    steps: list[StepComparison] = []
    answers: list[AnswerComparison] = []
    for other in sides[1:]:
        steps += compare_steps(baseline, other, threshold)
        answers += compare_answers(baseline, other, threshold)
    return Comparison(
        sides=tuple(sides),
        threshold=threshold,
        differences=tuple(differences([s.analysis.data.meta for s in sides])),
        steps=tuple(steps),
        answers=tuple(answers),
        unmatched=unmatched(sides),
    )


def _points(side: Side) -> dict[StepKey, Point]:
    return {(p.target, p.workload, p.users): p for p in side.analysis.points}


def _ordered_keys(side: Side, keys: Iterable[StepKey]) -> list[StepKey]:
    """Workloads and targets in the baseline's config order, then by users."""
    targets = list(side.analysis.data.targets)
    workloads = list(side.analysis.data.workloads)
    return sorted(
        keys,
        key=lambda k: (
            workloads.index(k[1]) if k[1] in workloads else len(workloads),
            targets.index(k[0]) if k[0] in targets else len(targets),
            k,
        ),
    )


def step_change(
    baseline: Point,
    other: Point,
    replicates: tuple[Replicates | None, Replicates | None],
    metric: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[float | None, Interval | None, str]:
    """One metric of two steps: the ratio other / baseline, its interval from both steps'
    replicates, and the verdict."""
    ratio = _ratio(_metric(baseline, metric), _metric(other, metric))
    ci = _ratio_ci(*replicates, metric)
    return ratio, ci, verdict(metric, ratio, ci, threshold)


def within_change(
    analysis: Analysis,
    trials: Mapping[StepKey, dict[int, Row]],
    baseline: Point,
    other: Point,
    metric: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[float | None, Interval | None, str]:
    """One metric of two steps of one run (`trials`: its trial_rows): paired by trial where
    both ran in two trials or more (what a trial did to both cancels out), else from the
    steps' seconds."""
    keys = [(p.target, p.workload, p.users) for p in (baseline, other)]
    a, b = trials.get(keys[0], {}), trials.get(keys[1], {})
    if len(a) > 1 and len(b) > 1:
        ratio, ci, _ = _paired(a, b, metric)
        return ratio, ci, verdict(metric, ratio, ci, threshold)
    replicates = (analysis.replicates.get(keys[0]), analysis.replicates.get(keys[1]))
    return step_change(baseline, other, replicates, metric, threshold)


def _paired(
    a: Mapping[int, Row], b: Mapping[int, Row], metric: str
) -> tuple[float | None, Interval | None, int]:
    """The ratio b / a of one metric over the trials both ran, paired by trial."""
    return paired_ratio(
        dict(zip(a, _of(a, metric), strict=True)), dict(zip(b, _of(b, metric), strict=True))
    )


def compare_steps(baseline: Side, other: Side, threshold: float) -> list[StepComparison]:
    """Two runs, step by step: over their trials when both have several (not paired: they ran
    at different times), else from the bootstrap of the seconds."""
    mine, theirs = _points(baseline), _points(other)
    base_trials, other_trials = trial_rows(baseline.analysis), trial_rows(other.analysis)
    found = []
    for key in _ordered_keys(baseline, mine.keys() & theirs.keys()):
        base_point, other_point = mine[key], theirs[key]
        flags = tuple(dict.fromkeys((*base_point.flags, *other_point.flags)))
        a, b = base_trials.get(key, {}), other_trials.get(key, {})
        for metric in METRICS:
            base_value = _metric(base_point, metric)
            other_value = _metric(other_point, metric)
            if len(a) > 1 and len(b) > 1:
                ratio, ci = unpaired_ratio(_of(a, metric), _of(b, metric))
                judged = verdict(metric, ratio, ci, threshold)
                basis, trials = "trials", min(len(a), len(b))
            else:
                replicates = (
                    baseline.analysis.replicates.get(key),
                    other.analysis.replicates.get(key),
                )
                ratio, ci, judged = step_change(
                    base_point, other_point, replicates, metric, threshold
                )
                basis, trials = "seconds", 1
            found.append(
                StepComparison(
                    target=key[0],
                    workload=key[1],
                    users=key[2],
                    metric=metric,
                    baseline_label=baseline.label,
                    other_label=other.label,
                    baseline=base_value,
                    other=other_value,
                    baseline_ci=base_point.rps_ci if metric == "rps" else base_point.p99_ci,
                    other_ci=other_point.rps_ci if metric == "rps" else other_point.p99_ci,
                    ratio=ratio,
                    ci=ci,
                    verdict=judged,
                    flags=flags,
                    basis=basis,
                    trials=trials,
                    note=spread_note(base_point, other_point, judged),
                    offered=base_point.offered_rps is not None,
                )
            )
    return found


def compare_within(analysis: Analysis, baseline: str, threshold: float) -> list[StepComparison]:
    """Every other target of one run against the baseline target, step by step, trial by
    trial: both ran in the same trials, so a ratio per trial takes out what the trial did to
    both alike."""
    points = {(p.target, p.workload, p.users): p for p in analysis.points}
    trials = trial_rows(analysis)
    found = []
    for (target, workload, users), point in points.items():
        base_point = points.get((baseline, workload, users))
        if target == baseline or base_point is None:
            continue
        flags = tuple(dict.fromkeys((*base_point.flags, *point.flags)))
        a, b = trials[(baseline, workload, users)], trials[(target, workload, users)]
        for metric in METRICS:
            ratio, ci, count = _paired(a, b, metric)
            judged = verdict(metric, ratio, ci, threshold)
            found.append(
                StepComparison(
                    target=target,
                    workload=workload,
                    users=users,
                    metric=metric,
                    baseline_label=baseline,
                    other_label=target,
                    baseline=_metric(base_point, metric),
                    other=_metric(point, metric),
                    baseline_ci=base_point.rps_ci if metric == "rps" else base_point.p99_ci,
                    other_ci=point.rps_ci if metric == "rps" else point.p99_ci,
                    ratio=ratio,
                    ci=ci,
                    verdict=judged,
                    flags=flags,
                    basis="paired",
                    trials=count,
                    note=spread_note(base_point, point, judged),
                    offered=base_point.offered_rps is not None,
                )
            )
    order = {name: i for i, name in enumerate(analysis.data.targets)}
    return sorted(found, key=lambda c: (c.workload, order.get(c.target, 0), c.users, c.metric))


def trial_rows(analysis: Analysis) -> dict[StepKey, dict[int, Row]]:
    """Each step's rows by trial."""
    found: dict[StepKey, dict[int, Row]] = {}
    for row in analysis.rows:
        found.setdefault((row.target, row.workload, row.users), {})[row.repeat] = row
    return found


def _of(rows: Mapping[int, Row], metric: str) -> list[float]:
    """A metric of each trial, in trial order (an unbounded p99 as inf: it has no ratio)."""
    values = [getattr(rows[t], metric) for t in sorted(rows)]
    return [math.inf if v is None else float(v) for v in values]


# The busiest worker's share of requests differs by this much between two sides: connections
# landed differently, which moves throughput below saturation by itself.
SPREAD_DIFFERENCE = 0.1


def spread_note(baseline: Point, other: Point, judged: str) -> str:
    """Said beside a verdict when the two sides' connections spread differently over their
    workers: a cause of the difference that lies in where Locust's connections landed."""
    a, b = baseline.worker_request_share_max, other.worker_request_share_max
    if judged == "same" or a is None or b is None or abs(a - b) < SPREAD_DIFFERENCE:
        return ""
    return (
        f"connections spread differently over the workers: the busiest took {a:.0%} of the "
        f"requests against {b:.0%}"
    )


def _metric(point: Point, metric: str) -> float | None:
    return point.rps if metric == "rps" else point.p99_ms


def _ratio(baseline: float | None, other: float | None) -> float | None:
    if baseline is None or other is None or baseline <= 0:
        return None
    return other / baseline


def _values(replicates: Replicates, metric: str) -> FloatArray:
    return replicates.rps if metric == "rps" else replicates.p99_ms


def _ratio_ci(
    baseline: Replicates | None, other: Replicates | None, metric: str
) -> Interval | None:
    if baseline is None or other is None:
        return None
    return ratio_interval(_values(baseline, metric), _values(other, metric))


def answer(analysis: Analysis, target: str, workload: str) -> Answer:
    series = [p for p in analysis.points if p.target == target and p.workload == workload]
    knee: Knee | None = analysis.knees.get((target, workload))
    peak = max(series, key=lambda p: p.rps) if series else None
    return Answer(
        peak_inflight_process=_max(p.peak_inflight_process for p in series),
        peak_inflight_server=_max(p.peak_inflight_server for p in series),
        knee_users=knee.knee_users if knee else None,
        peak_users=peak.users if peak else None,
        peak_rps=peak.rps if peak else None,
        peak_rps_ci=peak.rps_ci if peak else None,
        peak_flags=peak.flags if peak else (),
    )


def _max(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def compare_answers(baseline: Side, other: Side, threshold: float) -> list[AnswerComparison]:
    """Per target and workload in both runs: in flight, knee, and saturation throughput (the
    peak step of each run, whatever its user count, with an interval from both peak steps)."""
    pairs = {(k[0], k[1]) for k in _points(baseline)} & {(k[0], k[1]) for k in _points(other)}
    ordered = _ordered_keys(baseline, [(t, w, 0) for t, w in pairs])
    found = []
    for target, workload, _ in ordered:
        mine = answer(baseline.analysis, target, workload)
        theirs = answer(other.analysis, target, workload)
        ratio = _ratio(mine.peak_rps, theirs.peak_rps)
        ci = None
        if mine.peak_users is not None and theirs.peak_users is not None:
            ci = _ratio_ci(
                baseline.analysis.replicates.get((target, workload, mine.peak_users)),
                other.analysis.replicates.get((target, workload, theirs.peak_users)),
                "rps",
            )
        found.append(
            AnswerComparison(
                target,
                workload,
                baseline.label,
                other.label,
                mine,
                theirs,
                ratio,
                ci,
                verdict("rps", ratio, ci, threshold),
            )
        )
    return found


def unmatched(sides: Sequence[Side]) -> dict[str, tuple[StepKey, ...]]:
    """Steps the comparison could not match: the baseline's that some other run lacks, and each
    other run's that the baseline lacks."""
    base, *others = [set(_points(side)) for side in sides]
    alone = [{k for k in base if any(k not in other for other in others)}]
    alone += [other - base for other in others]
    return {
        side.label: tuple(_ordered_keys(side, keys))
        for side, keys in zip(sides, alone, strict=True)
        if keys
    }


def flatten(meta: Mapping[str, Any], targets: Iterable[str] = ()) -> dict[str, str]:
    """meta.json as dotted keys -> printable values, leaving out what differs between any two
    runs; of the targets, the settings of those named (the ones every run has)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if prefix in _IGNORED:
            return
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            flat[prefix] = ", ".join(str(v) for v in value)
        else:
            flat[prefix] = "-" if value is None else str(value)

    walk("", meta)
    flat["cores per side"] = _cores_per_side(meta)
    for name in targets:
        spec = meta.get("targets", {}).get(name, {})
        flat[f"targets.{name}.server"] = str(spec.get("server", "-"))
        for key, value in spec.get("settings", {}).items():
            flat[f"targets.{name}.{key}"] = str(value)
    return {_NAMED_KEYS.get(key, key): value for key, value in flat.items()}


def _cores_per_side(meta: Mapping[str, Any]) -> str:
    cpus = meta.get("cpus", {})
    try:
        target, load = parse_cpus(cpus["target"]), parse_cpus(cpus["load"])
    except (KeyError, TypeError, ValueError):
        return "?"
    return f"target {len(target)} (CPU {cpus['target']}), load {len(load)} (CPU {cpus['load']})"


def differences(metas: Sequence[Mapping[str, Any]]) -> list[Difference]:
    shared = set.intersection(*(set(meta.get("targets", {})) for meta in metas))
    order = [name for name in metas[0].get("targets", {}) if name in shared]
    flats = [flatten(meta, order) for meta in metas]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    found = [
        Difference(key, tuple(flat.get(key, "-") for flat in flats))
        for key in keys
        if len({flat.get(key, "-") for flat in flats}) > 1
    ]
    return sorted(found, key=lambda d: (_label_rank(d.key), keys.index(d.key)))


def _label_rank(key: str) -> int:
    for rank, prefix in enumerate(_LABEL_ORDER):
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return rank
    return len(_LABEL_ORDER)


def default_labels(metas: Sequence[Mapping[str, Any]], parts: int = 2) -> list[str]:
    """Each run named by the first metadata that sets it apart; run ids when nothing does."""
    found = differences(metas)[:parts]
    labels = [
        ", ".join(_label_part(d.key, d.values[index]) for d in found) for index in range(len(metas))
    ]
    if not found or len(set(labels)) < len(labels):
        return [str(meta.get("run_id", f"run {i + 1}")) for i, meta in enumerate(metas)]
    return labels


def _label_part(key: str, value: str) -> str:
    if key.startswith("packages."):
        return f"{key.removeprefix('packages.')} {value}"
    if key == "git":
        return f"git {value[:8]}"
    if key.startswith("targets."):
        return f"{key.removeprefix('targets.').replace('.', ' ')}={value}"
    if key in ("machine", "CPU model", "runner", "python"):
        return value if key != "python" else f"Python {value}"
    return f"{key} {value}"


def significant_share(steps: Sequence[StepComparison]) -> float | None:
    """The share of valid comparisons judged different (faster or slower)."""
    valid = [s for s in steps if s.valid]
    if not valid:
        return None
    return sum(s.verdict != "same" for s in valid) / len(valid)


def parse_threshold(text: str) -> float:
    """'2%' or '0.02' -> 0.02."""
    try:
        return parse_share(text)
    except ValueError as exc:
        raise CompareError(f"--threshold: {exc}") from None
