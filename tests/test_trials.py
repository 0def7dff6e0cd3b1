"""Trials (flaskbench/config/trials.py, plan/cells.py, measure/judgement.py): every trial runs
every cell once in its own shuffled order, reproducible from the seed; verdicts come from the
variation between trials, paired by trial within a run; "auto" adds trials until decided."""

from __future__ import annotations

import time
from importlib.metadata import version
from pathlib import Path

import pytest
from fakerun import Step, make_run, write_cell

from flaskbench.config.load import Config, Overrides, load_config
from flaskbench.config.problems import ConfigError
from flaskbench.config.trials import Comparing
from flaskbench.execute.auto_trials import MoreTrials
from flaskbench.execute.environments import Built
from flaskbench.execute.progress import Progress
from flaskbench.execute.run import execute, start_meta
from flaskbench.execute.runners.runner import CellContext, ResourceSampler, Runner, Service
from flaskbench.execute.swarm import SwarmHandle, SwarmKey
from flaskbench.measure.analyze import analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.measure.compare import compare_within
from flaskbench.measure.judgement import judge
from flaskbench.measure.stats import paired_ratio, trials_interval, unpaired_ratio
from flaskbench.plan.cells import make_plan
from flaskbench.plan.placement import single_host
from flaskbench.results.contract import MetaJson, RunnerDetails
from flaskbench.results.rundir import CellStatus, create_run_dir

PROJECT = Path(__file__).resolve().parent.parent
CONFIG = """
[cpus]
target = "0"
load = "1"
[load]
{load}
[targets.sync]
server = "gunicorn"
worker_class = "sync"
[targets.gthread]
server = "gunicorn"
worker_class = "gthread"
threads = 4
[workloads.io]
io_ms = 100
{more}
"""


def write(tmp_path: Path, load: str = "", more: str = "") -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(CONFIG.format(load=load, more=more))
    return path


def orders(seed: int, trials: int = 3) -> list[list[str]]:
    config = load_config(PROJECT / "bench.toml", Overrides(repeats=trials, seed=seed))
    found: dict[int, list[str]] = {}
    for cell in make_plan(config).cells:
        found.setdefault(cell.repeat, []).append(cell.cell_id.rsplit("--", 1)[0])
    return [found[t] for t in sorted(found)]


def test_every_trial_runs_every_cell_once_in_its_own_order() -> None:
    trials = orders(seed=7)
    assert len(trials) == 3
    assert all(sorted(t) == sorted(trials[0]) for t in trials)
    assert len(set(trials[0])) == len(trials[0]) == 6 * 4
    # Shuffled: not the config's order, and not the same from one trial to the next.
    config = load_config(PROJECT / "bench.toml")
    as_written = [f"{t.name}--{w.name}" for t in config.targets for w in config.workloads]
    assert trials[0] != as_written
    assert trials[0] != trials[1] != trials[2]


def test_the_same_seed_makes_the_same_orders() -> None:
    assert orders(seed=7) == orders(seed=7)
    assert orders(seed=7) != orders(seed=8)


def test_an_unset_seed_is_drawn_and_recorded() -> None:
    first = load_config(PROJECT / "bench.toml")
    second = load_config(PROJECT / "bench.toml")
    assert first.trials.seed != second.trials.seed
    assert first.as_run["load"]["seed"] == first.trials.seed


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ('repeats = "many"', 'load.repeats: must be a number of trials, 1 or more, or "auto"'),
        ("repeats = 0", "load.repeats: must be a number of trials"),
        ('budget = "10m"', 'load.budget: only applies with repeats = "auto"'),
        ('repeats = "auto"\nbudget = "soon"', "load.budget: cannot read 'soon' as a duration"),
        ("seed = -1", "load.seed: must be a whole number, 0 or more"),
    ],
)
def test_bad_trial_settings_are_one_line_each(tmp_path: Path, load: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, load))
    assert len(refused.value.problems) == 1
    assert message in refused.value.problems[0]


def test_a_run_that_compares_makes_trials_until_decided_by_default(tmp_path: Path) -> None:
    assert not load_config(write(tmp_path)).trials.auto
    loaded = load_config(write(tmp_path, more='[compare]\nbaseline = "sync"'))
    assert loaded.trials.auto
    assert loaded.trials.count == 3
    assert loaded.trials.budget_s == 1800
    assert loaded.comparing == Comparing("sync", 0.02)
    with pytest.raises(ConfigError, match=r"compare.baseline: must name one of the targets"):
        load_config(write(tmp_path, more='[compare]\nbaseline = "nope"'))
    with pytest.raises(ConfigError, match=r"compare.threshold: cannot read 'x' as a share"):
        load_config(write(tmp_path, more='[compare]\nbaseline = "sync"\nthreshold = "x"'))


def test_intervals_over_trials() -> None:
    # Student's t on the logs: 100, 110, 121 are 10% apart each; the interval holds their mean.
    interval = trials_interval([100.0, 110.0, 121.0])
    assert interval is not None
    assert interval.low < 110 < interval.high
    assert trials_interval([100.0]) is None
    assert trials_interval([100.0, 0.0]) is None
    # Paired: what a trial did to both sides alike cancels out.
    ratio, ci, count = paired_ratio({1: 100.0, 2: 50.0, 3: 80.0}, {1: 110.0, 2: 55.0, 3: 88.0})
    assert count == 3
    assert ratio == pytest.approx(1.1)
    assert ci is not None
    assert ci.low == pytest.approx(1.1) == ci.high
    # Unpaired, the same numbers say nothing: the trials' own spread is far larger.
    ratio, ci = unpaired_ratio([100.0, 50.0, 80.0], [110.0, 55.0, 88.0])
    assert ratio == pytest.approx(1.1)
    assert ci is not None
    assert ci.contains(1.0)


def test_a_difference_every_trial_shows_is_decided_and_run_level_chance_is_not(
    tmp_path: Path,
) -> None:
    # gthread's throughput moves from trial to trial (its connections landing on its workers
    # differently each time), while sync's does not.
    def step(rps: int) -> list[Step]:
        return [Step(8, rps, 8000 / rps)]

    cells = {
        **{f"sync--io--r{t}": step(20) for t in (1, 2, 3)},
        **{f"gthread--io--r{t}": step(rps) for t, rps in ((1, 60), (2, 78), (3, 66))},
        **{f"gevent--io--r{t}": step(rps) for t, rps in ((1, 21), (2, 20), (3, 20))},
    }
    analysis = analyze_run(load_run(make_run(tmp_path / "run", cells)))
    found = {(c.target, c.metric): c for c in compare_within(analysis, "sync", threshold=0.02)}
    faster = found[("gthread", "rps")]
    assert (faster.verdict, faster.basis, faster.trials) == ("faster", "paired", 3)
    same = found[("gevent", "rps")]
    assert same.verdict == "same"
    judgement = judge(analysis, Comparing("sync", 0.02), None)
    assert judgement.compared == 2
    # gevent's 0 to 5% over sync, 3 trials: neither clearly apart nor clearly within 2%.
    assert judgement.undecided == ("gevent against sync, io at 8 users",)


def test_noise_in_up_to_half_the_trials_is_absorbed_a_broken_trial_is_not(tmp_path: Path) -> None:
    def trial(steal: float = 0.0, failures: int = 0) -> list[Step]:
        # Both sides are busy (80% of their CPUs), so steal there is nearly all lost to them.
        return [
            Step(
                4,
                40,
                100,
                target_cpu=80,
                loadgen_cpu=80,
                host_busy=80,
                steal=steal,
                failures=failures,
            )
        ]

    cells = {
        # The hypervisor took 5% in two trials of four: noise, in the interval over trials.
        **{f"sync--io--r{t}": trial(steal=5 if t <= 2 else 0) for t in (1, 2, 3, 4)},
        # In three of four: the median is a disturbed trial.
        **{f"gthread--io--r{t}": trial(steal=5 if t <= 3 else 0) for t in (1, 2, 3, 4)},
        # Failed requests in one trial of four make the step wrong, whatever the others say.
        **{f"gevent--io--r{t}": trial(failures=30 if t == 4 else 0) for t in (1, 2, 3, 4)},
    }
    analysis = analyze_run(load_run(make_run(tmp_path / "run", cells)))
    rows = {(r.target, r.repeat): r for r in analysis.rows}
    assert "steal" in rows[("sync", 1)].flags
    points = {p.target: p for p in analysis.points}
    assert points["sync"].flags == ()
    assert points["gthread"].flags == ("steal",)
    assert "failures" in points["gevent"].flags


class SyntheticRunner(Runner):
    """Runs no process: each cell's raw files say what `rps` gives its target in that trial."""

    name = "local"

    def __init__(self, config: Config, rps: dict[str, list[int]]) -> None:
        super().__init__(config, lambda _message: None)
        self.rps = rps

    def setup(self) -> RunnerDetails:
        # Every environment has the gunicorn flaskbench runs with.
        packages = {"gunicorn": version("gunicorn")}
        self.built = [Built("here", "3.11", packages) for _ in self.environments.environments]
        return {}

    def run_check(self, log: Path, config: Config, environment: int) -> tuple[int, str]:
        return 0, ""

    def run_cell(self, ctx: CellContext) -> CellStatus:
        values = self.rps[ctx.cell.target.name]
        rps = values[min(ctx.cell.repeat, len(values)) - 1]
        ctx.cell_dir.mkdir(parents=True)
        write_cell(ctx.cell_dir, [Step(8, rps, 8000 / rps)], [])
        return CellStatus(ctx.cell.cell_id, "ok", "", 0.0, 1.0)

    def start_target(self, ctx: CellContext) -> Service:
        raise NotImplementedError

    def start_swarm(self, key: SwarmKey, number: int) -> SwarmHandle:
        raise NotImplementedError

    def start_proxy(self, ctx: CellContext) -> Service:
        raise NotImplementedError

    def start_sampler(
        self, ctx: CellContext, target: Service, swarm: SwarmHandle, proxy: Service | None
    ) -> ResourceSampler:
        raise NotImplementedError


def auto_run(tmp_path: Path, rps: dict[str, list[int]], taken_s: float = 0.0) -> MetaJson:
    """A run with repeats = "auto" and a budget of 10 minutes, `taken_s` of which are gone."""
    load = 'users = [8]\nrepeats = "auto"\nbudget = "10m"\nseed = 3'
    config = load_config(write(tmp_path, load, '[compare]\nbaseline = "sync"'))
    runner = SyntheticRunner(config, rps)
    run = create_run_dir(tmp_path / "results")
    meta = start_meta(config, Overrides(), run, runner, "test", single_host(config))
    progress = Progress(quiet=True)
    more = MoreTrials(config, run, started=time.monotonic() - taken_s)
    outcome = execute(make_plan(config), runner, run, meta, progress, more)
    assert not outcome.unsuccessful
    return run.read_meta()


def test_auto_adds_trials_until_every_comparison_is_decided(tmp_path: Path) -> None:
    # gthread's ratio to sync by trial: 1.10, 0.95, 1.15, then 1.10 every time. Three trials
    # leave the interval across 1; six make it 1.01 to 1.16, clear of it by more than 2%.
    meta = auto_run(tmp_path, {"sync": [200], "gthread": [220, 190, 230, 220]})
    trials = meta["trials"]
    assert (len(trials["order"]), trials["stopped"], trials["undecided"]) == (6, "decided", [])
    cells = [sorted(c.rsplit("--", 1)[0] for c in order) for order in trials["order"]]
    assert cells == [["gthread--io", "sync--io"]] * 6


def test_auto_stops_when_the_budget_is_spent_and_says_what_stayed_undecided(
    tmp_path: Path,
) -> None:
    # The first three trials took the run past its budget.
    meta = auto_run(tmp_path, {"sync": [200], "gthread": [220, 190, 230, 220]}, taken_s=600)
    trials = meta["trials"]
    assert (len(trials["order"]), trials["stopped"]) == (3, "budget")
    assert trials["undecided"] == ["gthread against sync, io at 8 users"]
