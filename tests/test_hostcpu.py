"""CPU steal and other processes' CPU per side, from a fake /proc/stat, down to the step flags;
and the machine model and frequency governor from a fake /sys."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fakerun import MEASURE, T0, WARMUP, Step, make_run

from flaskbench.execute.hostcpu import HostCpuSampler, read_proc_stat, side_usage
from flaskbench.execute.provenance import cpu_frequency, machine_model
from flaskbench.measure.analyze import analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.report.run_report import write_outputs


def proc_stat(path: Path, per_cpu: dict[int, tuple[int, int, int]], softirq: int = 0) -> None:
    """per_cpu: cpu -> (user ticks, idle ticks, steal ticks), cumulative; softirq on each."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    for cpu, (busy, idle, steal) in sorted(per_cpu.items()):
        # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append(f"cpu{cpu} {busy} 0 0 {idle} 0 0 {softirq} {steal} 0 0")
    lines.append("intr 12345 0 0")
    path.write_text("\n".join(lines) + "\n")


def test_proc_stat_is_read_per_cpu(tmp_path: Path) -> None:
    path = tmp_path / "stat"
    proc_stat(path, {0: (100, 800, 100), 1: (50, 950, 0)})
    times = read_proc_stat(path)
    assert set(times) == {0, 1}
    assert (times[0].total, times[0].process, times[0].steal) == (1000, 100, 100)
    assert read_proc_stat(tmp_path / "missing") == {}


def test_side_usage_is_percent_of_the_sides_cpus(tmp_path: Path) -> None:
    before = {0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0)}
    after = {0: (60, 30, 10), 1: (20, 80, 0), 2: (100, 0, 0)}
    first, second = tmp_path / "a", tmp_path / "b"
    proc_stat(first, before)
    proc_stat(second, after, softirq=20)
    usage = side_usage(read_proc_stat(first), read_proc_stat(second), [0, 1])
    assert usage is not None
    # CPUs 0 and 1: 240 ticks, 80 of them processes, 40 interrupts (no process's), 10 stolen.
    assert usage.busy_pct == pytest.approx(100 * 80 / 240)
    assert usage.steal_pct == pytest.approx(100 * 10 / 240)
    assert side_usage(read_proc_stat(first), read_proc_stat(first), [0]) is None


def sample_window(
    tmp_path: Path,
    cell_dir: Path,
    steal_ticks_per_second: int,
    busy_ticks_per_second: int,
    load: tuple[int, int] | None = None,
) -> None:
    """The sampler over one step's measured window, fed a fake /proc/stat (100 ticks/s): the
    target's CPU busy and stolen as given, the load generator's busy as much and never stolen,
    or `load`'s (busy, steal) ticks per second."""
    proc = tmp_path / "proc"
    proc.mkdir()
    stat = proc / "stat"
    sampler = HostCpuSampler(cell_dir / "host_cpu.csv", {"target": [0], "load": [1]}, proc)
    start = T0 + WARMUP
    per_second = {
        0: (busy_ticks_per_second, steal_ticks_per_second),
        1: load or (busy_ticks_per_second, 0),
    }
    for second in range(MEASURE + 1):
        proc_stat(
            stat,
            {
                cpu: (second * busy, second * (100 - busy - steal), second * steal)
                for cpu, (busy, steal) in per_second.items()
            },
        )
        sampler.sample(start + second + 0.01)
    sampler.stop()


@pytest.mark.parametrize(
    ("own", "steal", "flagged"),
    [
        # The hypervisor took about 5% of the time the CPU wanted to run from a saturated side:
        # about 5% of its work lost.
        (95, 5, True),
        # The same share from a side that needed a fifth of its CPU: under 1% lost.
        (20, 1, False),
        # A sixth of a half-busy side's runnable time.
        (50, 10, True),
    ],
)
def test_steal_is_flagged_where_the_side_needed_its_cpus(
    tmp_path: Path, own: int, steal: int, flagged: bool
) -> None:
    step = Step(users=2, rps=20, latency_ms=100, target_cpu=own)
    run = make_run(tmp_path / "run", {"sync--io--r1": [step]})
    cell_dir = run.cell_dir("sync--io--r1")
    sample_window(tmp_path, cell_dir, steal, busy_ticks_per_second=own)
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
    ("target_cpu", "inflight", "flagged"),
    [
        # The target's CPU mostly idle and one of its two slots free: it waited for the load
        # generator, whose stolen sixth (8% of the time) it lost too.
        (20, 1, True),
        # A CPU-saturated target never waited for the load generator.
        (100, 1, False),
        # Nor did one whose slots were all busy, with users queued behind them.
        (20, 2, False),
    ],
)
def test_the_load_generators_steal_counts_only_where_the_target_waited_for_it(
    tmp_path: Path, target_cpu: int, inflight: int, flagged: bool
) -> None:
    # 16 users on gunicorn sync's 2 workers, the load generator at half its CPU.
    servers = [(101 + n, 1, 50) for n in range(inflight)]
    step = Step(16, 100, 160, processes=servers, target_cpu=target_cpu, loadgen_cpu=50)
    run = make_run(tmp_path / "run", {"sync--io--r1": [step]})
    sample_window(tmp_path, run.cell_dir("sync--io--r1"), 0, target_cpu, load=(50, 10))
    (row,) = analyze_run(load_run(run)).rows
    assert (row.load_steal_pct, row.target_steal_pct) == (pytest.approx(10), 0)
    assert ("steal" in row.flags) is flagged


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


def process_stat(proc: Path, pid: int, name: str, utime: int, stime: int) -> None:
    (proc / str(pid)).mkdir(exist_ok=True)
    (proc / str(pid) / "stat").write_text(
        f"{pid} ({name}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 9 0\n"
    )


def test_the_container_engines_cpu_is_the_harnesss_on_both_sides(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    sampler = HostCpuSampler(tmp_path / "host_cpu.csv", {"target": [0], "load": [1]}, proc)
    for second in range(3):
        proc_stat(
            proc / "stat", {0: (50 * second, 50 * second, 0), 1: (50 * second, 50 * second, 0)}
        )
        # dockerd and a shim (its name cut to 15 characters) each use 4% of a core; a process
        # with a parenthesis in its name, and a busy one that is not the engine's, do not count.
        process_stat(proc, 10, "dockerd", 2 * second, 2 * second)
        process_stat(proc, 11, "containerd-shim", 4 * second, 0)
        process_stat(proc, 12, "x) (dockerd", 50 * second, 0)
        process_stat(proc, 13, "python3", 50 * second, 0)
        sampler.sample(T0 + second)
    sampler.stop()
    with (tmp_path / "host_cpu.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # This test's process is pinned to neither side, so the engine's 8% is all on each.
    assert [(r["side"], float(r["flaskbench_pct"])) for r in rows] == [
        ("target", pytest.approx(8.0)),
        ("load", pytest.approx(8.0)),
    ] * 2


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


def test_the_reports_provenance_names_the_noise(tmp_path: Path) -> None:
    steps = [
        Step(users=2, rps=20, latency_ms=100, loadgen_cpu=50, host_busy=50, steal=7.5),
        Step(users=4, rps=40, latency_ms=100, host_busy=90),
    ]
    run = make_run(
        tmp_path / "run",
        {"sync--io--r1": steps},
        meta={"machine": {"cpu_model": "Test CPU", "cpu_count": 2, "model": {"product": "c7g"}}},
    )
    write_outputs(run, analyze_run(load_run(run)))
    provenance = (run.path / "report.md").read_text().split("## Provenance")[1]
    assert "Machine: c7g (Test CPU, 2 CPUs)" in provenance
    assert "CPU frequency driver and governor not visible on this host" in provenance
    assert "CPU steal time, highest step: target 7.5%, load 7.5%" in provenance
    assert "other processes on the sides' CPUs, highest step: target 40.0%, load 60.0%" in (
        provenance
    )
    assert "1 step was flagged `steal`, 1 step `cpu_contention`" in provenance
