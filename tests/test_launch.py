"""The target launcher with real servers on 127.0.0.1: gauge.csv, signals and exit codes."""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from benchrun import wait_for
from flaskbench_target import gauge
from flaskbench_target import launch as launcher

TARGETS = Path(__file__).resolve().parent.parent / "targets"
TIMEOUT_S = 10

pytestmark = pytest.mark.load


@dataclass(frozen=True)
class GaugeRow:
    t: str
    pid: int
    inflight: int
    peak: int
    served: int


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    log: Path
    gauge_csv: Path

    def server_pid(self) -> int:
        """The server's pid, from the launcher's start line."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            match = re.search(r"launch: started pid (\d+)", self.log.read_text())
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        raise AssertionError(f"no start line in the log:\n{self.log.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(TIMEOUT_S)

    def wait_until_served(self, count: int) -> None:
        """Until the gauge.csv rows show `count` requests served: rows for time t are written one
        interval later, and stopping the server before would leave them out."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if final_served(self.gauge_rows()).get(0) == count:
                return
            time.sleep(0.05)
        raise AssertionError(f"the gauge never saw {count} requests served")

    def gauge_rows(self) -> list[GaugeRow]:
        with self.gauge_csv.open(newline="") as file:
            reader = csv.DictReader(file)
            assert reader.fieldnames == ["t", "pid", "inflight", "peak", "served", "lost"]
            return [
                GaugeRow(
                    row["t"],
                    int(row["pid"]),
                    int(row["inflight"]),
                    int(row["peak"]),
                    int(row["served"]),
                )
                for row in reader
            ]


@contextlib.contextmanager
def launch(
    tmp_path: Path, server: list[str], *options: str, python: str = sys.executable
) -> Iterator[Launched]:
    """Run the launcher from targets/ with `server` (in `python`, as the target's environment
    runs it); whatever happens, leave no process behind."""
    log = tmp_path / "target.log"
    gauge_csv = tmp_path / "gauge.csv"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [python, "-m", "flaskbench_target.launch", *options, "--", *server],
            cwd=TARGETS,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    launched = Launched(process, log, gauge_csv)
    try:
        yield launched
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # The server's own group, in case the launcher could not clean up.
        match = re.search(r"launch: started pid (\d+)", log.read_text())
        if match:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(match.group(1)), signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, launched: Launched) -> None:
    # A bare connection is no request: the app is not called, so served counts stay exact.
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert launched.process.poll() is None, launched.log.read_text()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}:\n{launched.log.read_text()}")


def concurrent_gets(port: int, path: str, count: int) -> list[int]:
    """`count` GET requests started together, each on its own connection; their statuses."""
    start = threading.Barrier(count)
    statuses: list[int] = []

    def get() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        try:
            start.wait(TIMEOUT_S)
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=get) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    return statuses


def check_contract(rows: list[GaugeRow]) -> None:
    """The shape docs/raw-data.md promises: per sample, one server row and then process rows."""
    assert rows, "no samples"
    times = [row.t for row in rows if row.pid == 0]
    assert len(times) == len(set(times)), "two server rows in one sample"
    assert [row.t for row in rows if row.t not in times] == []
    assert all(re.fullmatch(r"\d+\.\d00", t) for t in times), "not on multiples of 0.1 s"
    assert [float(t) for t in times] == sorted(float(t) for t in times)
    for t in times:
        pids = [row.pid for row in rows if row.t == t]
        assert pids[0] == 0
        assert len(pids) == len(set(pids))


def final_served(rows: list[GaugeRow]) -> dict[int, int]:
    """The last `served` of every pid (0 is the server)."""
    return {row.pid: row.served for row in rows}


def devserver(port: int, *options: str) -> list[str]:
    return [
        *(sys.executable, "-m", "flaskbench_target.devserver"),
        *("--host", "127.0.0.1", "--port", str(port), *options),
    ]


def test_threaded_devserver_is_gauged_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, n = free_port(), 8
    with launch(
        tmp_path, devserver(port, "--threaded"), "--gauge-out", str(tmp_path / "gauge.csv")
    ) as launched:
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=200", n) == [200] * n
        launched.wait_until_served(n)
        assert launched.stop() == 0
        rows = launched.gauge_rows()
    check_contract(rows)
    server_pid = launched.server_pid()
    assert max(row.peak for row in rows if row.pid == 0) >= n
    assert max(row.peak for row in rows if row.pid == server_pid) >= n
    assert final_served(rows) == {0: n, server_pid: n}
    assert rows[-1].inflight == 0
    log = launched.log.read_text()
    assert f"server pid {server_pid} was killed by SIGTERM after we asked it to stop" in log


def test_forking_devserver_counts_a_slot_per_child(tmp_path: Path) -> None:
    port, n = free_port(), 4
    server = devserver(port, "--no-threaded", "--processes", str(n))
    with launch(tmp_path, server, "--gauge-out", str(tmp_path / "gauge.csv")) as launched:
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=300", n) == [200] * n
        launched.wait_until_served(n)
        assert launched.stop() == 0
        rows = launched.gauge_rows()
    check_contract(rows)
    served = final_served(rows)
    assert served.pop(0) == n
    # A child per request, each in its own slot; the parent never calls the app.
    assert served == dict.fromkeys(served, 1)
    assert len(served) == n
    assert launched.server_pid() not in served
    assert max(row.peak for row in rows if row.pid == 0) == n


def test_gunicorn_sync_workers_each_have_a_row(tmp_path: Path) -> None:
    port, n = free_port(), 8
    server = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "sync",
        "--workers",
        "2",
        "--worker-tmp-dir",
        "/dev/shm",
        "--no-control-socket",
        "flaskbench_target.appload:application",
    ]
    with launch(tmp_path, server, "--gauge-out", str(tmp_path / "gauge.csv")) as launched:
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=200", n) == [200] * n
        launched.wait_until_served(n)
        assert launched.stop() == 0
        rows = launched.gauge_rows()
    check_contract(rows)
    served = final_served(rows)
    assert served.pop(0) == n
    assert len(served) == 2
    assert sum(served.values()) == n
    # A sync worker serves one request at a time; two of them, two at once.
    assert max(row.peak for row in rows if row.pid != 0) == 1
    assert max(row.peak for row in rows if row.pid == 0) == 2


def test_the_server_sees_the_stop_signal_even_where_its_starter_ignored_it(
    tmp_path: Path,
) -> None:
    """A shell ignores SIGINT in what it starts in the background, and an ignored signal stays
    ignored across exec: the launcher gives the server the default handling back."""
    log = tmp_path / "target.log"
    server = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "flaskbench_target.launch", "--stop-signal", "INT"),
                *("--grace", "30", "--", *server),
            ],
            cwd=TARGETS,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
        )
    try:
        wait_for(lambda: "ready" in log.read_text(), TIMEOUT_S, "the server to start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "was killed by SIGINT after we asked it to stop" in text
    assert "grace period had run out" not in text


def test_a_server_exiting_on_its_own_passes_on_its_code(tmp_path: Path) -> None:
    server = [sys.executable, "-c", "import sys; sys.exit(3)"]
    with launch(tmp_path, server, "--gauge-out", str(tmp_path / "gauge.csv")) as launched:
        assert launched.process.wait(TIMEOUT_S) == 3
        rows = launched.gauge_rows()
    check_contract(rows)
    assert rows[-1] == GaugeRow(rows[-1].t, 0, 0, 0, 0)
    assert f"server pid {launched.server_pid()} exited with code 3 on its own" in (
        launched.log.read_text()
    )


def test_a_server_killed_by_a_signal_gives_128_plus_it(tmp_path: Path) -> None:
    server = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    with launch(tmp_path, server) as launched:
        assert launched.process.wait(TIMEOUT_S) == 128 + signal.SIGKILL
    assert "was killed by SIGKILL on its own" in launched.log.read_text()
    assert not launched.gauge_csv.exists()


IGNORES_SIGTERM = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).touch()
time.sleep(60)
"""


def test_a_server_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    server = [sys.executable, "-c", IGNORES_SIGTERM, str(ready)]
    with launch(tmp_path, server, "--grace", "0.5") as launched:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert launched.stop() == 0
    log = launched.log.read_text()
    assert (
        "was killed by SIGKILL after we asked it to stop once the grace period had run out" in log
    )


def test_the_server_dies_with_the_launcher(tmp_path: Path) -> None:
    server = [sys.executable, "-c", "import time; time.sleep(60)"]
    with launch(tmp_path, server) as launched:
        server_pid = launched.server_pid()
        launched.process.kill()
        launched.process.wait(TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while not gone(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(server_pid)


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


CHECKS_GAUGE_VARIABLE = """
import os, sys
from flaskbench_target import gauge
path = os.environ.get("FLASKBENCH_GAUGE")
if sys.argv[1] == "off":
    sys.exit(0 if path is None else 10)
gauge.GaugeReader(path).close()
"""


@pytest.mark.parametrize("gauged", [True, False])
def test_the_gauge_variable_is_set_only_with_gauge_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gauged: bool
) -> None:
    # An inherited variable must not sneak a gauge into the baseline.
    monkeypatch.setenv("FLASKBENCH_GAUGE", "/nonexistent")
    server = [sys.executable, "-c", CHECKS_GAUGE_VARIABLE, "on" if gauged else "off"]
    options = ["--gauge-out", str(tmp_path / "gauge.csv")] if gauged else []
    with launch(tmp_path, server, *options) as launched:
        assert launched.process.wait(TIMEOUT_S) == 0, launched.log.read_text()


def test_the_default_gauge_file_is_removed_at_exit(tmp_path: Path) -> None:
    before = set(Path("/dev/shm").glob("flaskbench-gauge-*"))
    server = [sys.executable, "-c", "import os; print(os.environ['FLASKBENCH_GAUGE'])"]
    with launch(tmp_path, server, "--gauge-out", str(tmp_path / "gauge.csv")) as launched:
        assert launched.process.wait(TIMEOUT_S) == 0
    assert set(Path("/dev/shm").glob("flaskbench-gauge-*")) == before
    assert "/dev/shm/flaskbench-gauge-" in launched.log.read_text()


@pytest.mark.parametrize(
    "arguments",
    [
        ["python"],
        ["--"],
        ["--gauge-file", "/dev/shm/x", "--", "python"],
        ["--interval", "0", "--", "python"],
    ],
)
def test_a_bad_command_line_exits_2(arguments: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flaskbench_target.launch", *arguments],
        cwd=TARGETS,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr


class FakeReader:
    """Stands in for a GaugeReader: records the horizons it is asked for."""

    def __init__(self, sample: gauge.Sample) -> None:
        self.horizons: list[int | None] = []
        self._sample = sample

    def sample(self, horizon_ns: int | None = None) -> gauge.Sample:
        self.horizons.append(horizon_ns)
        return self._sample


def test_rows_replay_the_gauge_up_to_their_own_time_in_monotonic_ns() -> None:
    server = gauge.Row(0, 1, 2, 3)
    reader = FakeReader(gauge.Sample(server, [gauge.Row(42, 1, 2, 3)], 0, lost=4))
    out = io.StringIO()
    sampler = launcher.GaugeCsv(reader, out, "unused", None)  # type: ignore[arg-type]
    t = round(time.time(), 1) - 0.1
    sampler.write_sample(t)
    sampler.write_sample(t + 0.1, replay_all=True)
    assert out.getvalue().splitlines() == [
        launcher.CSV_HEADER.strip(),
        f"{t:.3f},0,1,2,3,4",
        f"{t:.3f},42,1,2,3,0",
        f"{t + 0.1:.3f},0,1,2,3,4",
        f"{t + 0.1:.3f},42,1,2,3,0",
    ]
    horizon, replay_all = reader.horizons
    assert replay_all is None
    assert horizon is not None
    # Wall-clock time t on the monotonic clock: this long before now, give or take the time the
    # clocks took to read here (a loaded machine may pause between them) and when the sampler
    # read them.
    before = time.time()
    monotonic_now = time.monotonic_ns()
    after = time.time()
    since_t = (monotonic_now - horizon) / 1e9
    assert before - t - 0.05 <= since_t <= after - t + 0.05


def test_the_launcher_names_what_made_the_gauge_approximate() -> None:
    reader = FakeReader(gauge.Sample(gauge.Row(0, 0, 0, 0), [], 3, late=2, dropped=1))
    sampler = launcher.GaugeCsv(reader, io.StringIO(), "unused", None)  # type: ignore[arg-type]
    assert sampler.warnings() == []
    sampler.write_sample(1.0)
    assert [warning.split()[0] for warning in sampler.warnings()] == ["3", "2", "1"]
    assert "not counted" in sampler.warnings()[0]
    assert "after their sample" in sampler.warnings()[1]
    assert "lost" in sampler.warnings()[2]


def test_alternate_counts_in_even_periods_and_pauses_in_odd_ones() -> None:
    assert [launcher.paused_at(t, 2) for t in (0.0, 1.9, 2.0, 3.99, 4.0, 6.5)] == [
        False,
        False,
        True,
        True,
        False,
        True,
    ]
    paused: list[bool] = []

    class PausingReader(FakeReader):
        def pause(self, flag: bool) -> None:
            paused.append(flag)

    reader = PausingReader(gauge.Sample(gauge.Row(0, 0, 0, 0), [], 0))
    sampler = launcher.GaugeCsv(reader, io.StringIO(), "unused", 1)  # type: ignore[arg-type]
    for t in (10.0, 10.5, 11.0, 12.0):
        sampler.pause_if_due(t)
    assert paused == [False, False, True, False]
    still = launcher.GaugeCsv(reader, io.StringIO(), "unused", None)  # type: ignore[arg-type]
    still.pause_if_due(11.0)
    assert paused == [False, False, True, False]
