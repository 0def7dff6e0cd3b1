"""CPU steal and other processes' CPU per side, from a fake /proc/stat, down to the step flags;
and the machine model and frequency governor from a fake /sys."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fakerun import MEASURE, T0, WARMUP, Step, make_run

from flaskbench.analyze import analyze_run
from flaskbench.collect import load_run
from flaskbench.hostcpu import HostCpuSampler, read_proc_stat, side_usage
from flaskbench.meta import cpu_frequency, machine_model


def proc_stat(path: Path, per_cpu: dict[int, tuple[int, int, int]]) -> None:
    """per_cpu: cpu -> (busy ticks, idle ticks, steal ticks), cumulative."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    for cpu, (busy, idle, steal) in sorted(per_cpu.items()):
        # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append(f"cpu{cpu} {busy} 0 0 {idle} 0 0 0 {steal} 0 0")
    lines.append("intr 12345 0 0")
    path.write_text("\n".join(lines) + "\n")


def test_proc_stat_is_read_per_cpu(tmp_path: Path) -> None:
    path = tmp_path / "stat"
    proc_stat(path, {0: (100, 800, 100), 1: (50, 950, 0)})
    times = read_proc_stat(path)
    assert set(times) == {0, 1}
    assert (times[0].total, times[0].idle, times[0].steal) == (1000, 800, 100)
    assert read_proc_stat(tmp_path / "missing") == {}


def test_side_usage_is_percent_of_the_sides_cpus(tmp_path: Path) -> None:
    before = {0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0)}
    after = {0: (60, 30, 10), 1: (20, 80, 0), 2: (100, 0, 0)}
    first, second = tmp_path / "a", tmp_path / "b"
    proc_stat(first, before)
    proc_stat(second, after)
    usage = side_usage(read_proc_stat(first), read_proc_stat(second), [0, 1])
    assert usage is not None
    # CPUs 0 and 1: 200 ticks, 110 idle, 10 stolen (steal counts as busy: not ours to use).
    assert usage.busy_pct == pytest.approx(45.0)
    assert usage.steal_pct == pytest.approx(5.0)
    assert side_usage(read_proc_stat(first), read_proc_stat(first), [0]) is None


def sample_window(
    tmp_path: Path, cell_dir: Path, steal_ticks_per_second: int, busy_ticks_per_second: int
) -> None:
    """The sampler over one step's measured window, fed a fake /proc/stat (100 ticks/s)."""
    stat = tmp_path / "stat"
    sampler = HostCpuSampler(cell_dir / "host_cpu.csv", {"target": [0], "load": [1]}, stat)
    start = T0 + WARMUP
    for second in range(MEASURE + 1):
        busy = second * busy_ticks_per_second
        steal = second * steal_ticks_per_second
        idle = second * 100 - busy - steal
        proc_stat(stat, {0: (busy, idle, steal), 1: (busy, idle, 0)})
        sampler.sample(start + second + 0.01)
    sampler.stop()


@pytest.mark.parametrize(("steal", "flagged"), [(8, True), (2, False)])
def test_a_step_with_high_steal_is_flagged(tmp_path: Path, steal: int, flagged: bool) -> None:
    run = make_run(tmp_path / "run", {"sync--io--r1": [Step(users=2, rps=20, latency_ms=100)]})
    cell_dir = run.cell_dir("sync--io--r1")
    # The target side itself uses 50% (fakerun's resources), and so does the host's view.
    sample_window(tmp_path, cell_dir, steal, busy_ticks_per_second=50)
    with (cell_dir / "host_cpu.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * MEASURE
    assert {r["steal_pct"] for r in rows if r["side"] == "target"} == {f"{float(steal)}"}
    (row,) = analyze_run(load_run(run)).rows
    assert row.target_steal_pct == pytest.approx(steal)
    assert row.load_steal_pct == 0
    assert ("steal" in row.flags) is flagged
    assert row.as_csv()["target_steal_pct"] == float(steal)


@pytest.mark.parametrize(
    ("own", "busy", "orchestrator", "flagged"),
    [
        # Each side needed half its CPU and others took 20% more: about 10% lost.
        (50, 70, 0, True),
        # Others took 1%: about 0.5% lost.
        (50, 51, 0, False),
        # The same 10% beyond the load generator was flaskbench itself, which is expected there.
        (50, 60, 9, False),
        # Others took 40%, but the sides needed 2%: they mostly waited anyway.
        (2, 42, 0, False),
        # Others took nearly everything: even a light side waits for it.
        (2, 92, 0, True),
    ],
)
def test_other_processes_competing_for_a_sides_cpus_are_flagged(
    tmp_path: Path, own: float, busy: float, orchestrator: float, flagged: bool
) -> None:
    step = Step(
        users=2,
        rps=20,
        latency_ms=100,
        target_cpu=own,
        loadgen_cpu=own,
        host_busy=busy,
        orchestrator=orchestrator,
    )
    (row,) = analyze_run(load_run(make_run(tmp_path / "run", {"sync--io--r1": [step]}))).rows
    assert row.load_others_pct == pytest.approx(busy - own - orchestrator)
    assert row.target_others_pct == pytest.approx(busy - own - orchestrator)
    assert ("cpu_contention" in row.flags) is flagged


def test_runs_without_host_cpu_records_have_no_steal(tmp_path: Path) -> None:
    step = Step(users=2, rps=20, latency_ms=100)
    (row,) = analyze_run(load_run(make_run(tmp_path / "run", {"sync--io--r1": [step]}))).rows
    assert (row.target_steal_pct, row.target_others_pct) == (None, None)
    assert row.valid


def test_machine_model_and_frequency_governor_from_sysfs(tmp_path: Path) -> None:
    dmi = tmp_path / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    (dmi / "product_name").write_text("c7g.large\n")
    for cpu, governor in ((0, "performance"), (1, "performance"), (2, "powersave")):
        freq = tmp_path / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_driver").write_text("cppc_cpufreq\n")
        (freq / "scaling_governor").write_text(f"{governor}\n")
    assert machine_model(tmp_path) == {"vendor": "Amazon EC2", "product": "c7g.large"}
    assert cpu_frequency([0, 1], tmp_path) == {"driver": "cppc_cpufreq", "governor": "performance"}
    assert cpu_frequency([0, 2], tmp_path)["governor"] == "performance, powersave"
    # Not visible (containers, many VMs): recorded as unknown, not guessed.
    assert machine_model(tmp_path / "none") == {"vendor": None, "product": None}
    assert cpu_frequency([5], tmp_path) == {"driver": None, "governor": None}
