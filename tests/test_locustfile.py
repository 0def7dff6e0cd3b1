"""Run the real Locust swarm (locustfiles/master.py and workers of locustfile.py), as the
orchestrator does, against a tiny server on 127.0.0.1: one order per cell, events back.

Locust runs in subprocesses only: importing it would monkey-patch this test process.
"""

from __future__ import annotations

import csv
import http.server
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from stepstats import quantise_ms
from swarmrun import Swarm, one_cell

from flaskbench.execute.swarm import HEARTBEAT_FILE

pytestmark = pytest.mark.load

SERVER_DELAY_S = 0.01
PATHS = {"/hello", "/io", "/cpu", "/mixed", "/form", "/redirect", "/serial"}


@dataclass
class _Server:
    port: int
    # Paths that answer their first request with 200 and every later one with 500.
    failing: set[str]
    # (path, query) of every request, in arrival order.
    seen: list[tuple[str, str]] = field(default_factory=list)
    # (method, path, content type, body, X-Test header) of every request.
    details: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    # Seconds from reading each request to handing over its response, as the server saw it.
    handling_s: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sent(self) -> list[tuple[str, str]]:
        """Every request but the master's readiness check (any answer to GET / will do)."""
        return [seen for seen in self.seen if seen[0] != "/"]


def _start_server(failing: set[str]) -> tuple[http.server.ThreadingHTTPServer, _Server]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; Nagle would hold the body back ~40 ms.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            began = time.perf_counter()
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length).decode() if length else ""
            state.details.append(
                (
                    self.command,
                    path,
                    self.headers.get("Content-Type", ""),
                    sent,
                    self.headers.get("X-Test", ""),
                )
            )
            earlier = [p for p, _ in state.seen if p == path]
            state.seen.append((path, query))
            if path == "/serial":
                # One request at a time: latency grows with the users, as a saturated server's.
                with serial:
                    threading.Event().wait(SERVER_DELAY_S)
            else:
                threading.Event().wait(SERVER_DELAY_S)
            status = 404 if path not in PATHS else 200
            if path in state.failing and earlier:
                status = 500
            if path == "/redirect":
                status = 302
            body = b"ok" if status != 404 else b"no such page\nsecond line"
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/hello")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            state.handling_s.append(time.perf_counter() - began)

        do_POST = do_PUT = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    serial = threading.Lock()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state = _Server(port=httpd.server_address[1], failing=failing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, state


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class _Run:
    loadgen: dict[str, Any]
    locust_requests: int
    locust_failures: int
    # The master's "done" event for the cell.
    done: dict[str, Any]
    master_code: int
    worker_codes: list[int]
    server: _Server


def _argv(server: _Server, fb: dict[str, object]) -> list[str]:
    """A cell's options: fb holds the --fb-* ones, without their prefix."""
    return ["--host", server.url, *(a for k, v in fb.items() for a in (f"--fb-{k}", str(v)))]


def _run(
    directory: Path,
    server: _Server,
    user_class: str,
    workers: int,
    fb: dict[str, object],
    extra: Path | None = None,
) -> _Run:
    """One cell on a swarm of its own; `extra` is a locustfile of the user's."""
    done, master_code, worker_codes = one_cell(
        directory, user_class, workers, _argv(server, fb), extra
    )
    return _cell_run(directory / "cell", done, master_code, worker_codes, server)


def _cell_run(
    cell: Path, done: dict[str, Any], master_code: int, worker_codes: list[int], server: _Server
) -> _Run:
    aggregated = _locust_aggregated(cell / "locust_stats.csv") or {
        "Request Count": "0",
        "Failure Count": "0",
    }
    return _Run(
        loadgen=json.loads((cell / "loadgen.json").read_text()),
        locust_requests=int(aggregated["Request Count"]),
        locust_failures=int(aggregated["Failure Count"]),
        done=done,
        master_code=master_code,
        worker_codes=worker_codes,
        server=server,
    )


def _locust_aggregated(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return next((row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"), None)


def requests_option(*requests: dict[str, object]) -> str:
    return json.dumps(list(requests))


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Run]:
    httpd, server = _start_server(failing=set())
    try:
        yield _run(
            tmp_path_factory.mktemp("distributed"),
            server,
            "RequestsUser",
            workers=2,
            fb={
                "requests": requests_option({"path": "/io?ms=7"}),
                "steps": "1,2",
                "warmup": 1,
                "measure": 2,
            },
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Run]:
    httpd, server = _start_server(failing={"/cpu"})
    try:
        yield _run(
            tmp_path_factory.mktemp("failing"),
            server,
            "RequestsUser",
            workers=1,
            fb={
                "requests": requests_option({"path": "/cpu?ms=3"}),
                "steps": "2",
                "warmup": 1,
                "measure": 1,
            },
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


def _window_buckets(loadgen: dict[str, Any], step: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {
        b["t"]: b
        for b in loadgen["buckets"]
        if step["measure_start"] <= b["t"] < step["measure_end"]
    }


def test_a_swarm_stopped_by_the_orchestrator_exits_cleanly(distributed: _Run) -> None:
    assert distributed.done == {"format": 1, "event": "done", "cell": "cell", "ok": True}
    assert distributed.master_code == 0
    assert distributed.worker_codes == [0, 0]


def test_steps_have_whole_second_back_to_back_windows(distributed: _Run) -> None:
    steps = distributed.loadgen["steps"]

    assert [(s["index"], s["users"]) for s in steps] == [(0, 1), (1, 2)]
    for step in steps:
        assert step["start"] == int(step["start"])
        assert step["measure_start"] == step["start"] + 1
        assert step["measure_end"] == step["measure_start"] + 2
    assert steps[1]["start"] == steps[0]["measure_end"]


def test_every_second_of_every_window_has_plausible_counts(distributed: _Run) -> None:
    # Each user completes at most one request per SERVER_DELAY_S, and should get most of them.
    rates = []
    for step in distributed.loadgen["steps"]:
        buckets = _window_buckets(distributed.loadgen, step)
        ceiling = step["users"] * (1 / SERVER_DELAY_S + 1)

        assert sorted(buckets) == list(range(int(step["measure_start"]), int(step["measure_end"])))
        for bucket in buckets.values():
            assert 0.5 * ceiling <= bucket["requests"] <= ceiling, (step, bucket)
            assert bucket["failures"] == 0
        rates.append(statistics.fmean(b["requests"] for b in buckets.values()))
    assert rates[1] > 1.5 * rates[0]


def test_buckets_hold_exactly_the_requests_locust_counted(distributed: _Run) -> None:
    buckets = distributed.loadgen["buckets"]

    total = sum(b["requests"] for b in buckets)

    assert total == distributed.locust_requests
    # The master's one verification request is not load; besides, only the requests in flight
    # when the users were stopped go unrecorded.
    assert total + 1 <= len(distributed.server.sent) <= total + 1 + 2
    assert all(sum(b["latency_ms"].values()) == b["requests"] for b in buckets)


def test_latency_histogram_is_quantised_and_near_the_server_delay(distributed: _Run) -> None:
    values: list[float] = []
    for bucket in distributed.loadgen["buckets"]:
        for key, count in bucket["latency_ms"].items():
            assert quantise_ms(float(key)) == key
            values += [float(key)] * count

    # Never below the server's delay; and near what the server itself took on this machine,
    # loaded or not, rather than a fixed figure.
    served_ms = 1000 * statistics.median(distributed.server.handling_s)
    assert 1000 * SERVER_DELAY_S <= statistics.median_low(values) < 3 * served_ms


def test_workers_and_their_cpu_are_recorded(distributed: _Run) -> None:
    loadgen = distributed.loadgen
    nodes = {sample["node"] for sample in loadgen["loadgen_cpu"]}

    assert loadgen["workers"] == 2
    assert "master" in nodes
    assert len([n for n in nodes if n.startswith("worker-")]) == 2
    assert all(sample["cpu_pct"] >= 0 for sample in loadgen["loadgen_cpu"])
    assert isinstance(loadgen["cpu_warnings"], list)


def test_the_workload_is_verified_once_then_sent(distributed: _Run) -> None:
    assert distributed.loadgen["workload"] == {
        "user_class": "RequestsUser",
        "path": "GET /io?ms=7",
        "wait_time": None,
    }
    assert distributed.loadgen["verification"] == {
        "ok": True,
        "checked": ["GET /io?ms=7"],
        "failure": None,
    }
    assert set(distributed.server.sent) == {("/io", "ms=7")}


def test_unexpected_statuses_are_failures_not_throughput(failing: _Run) -> None:
    buckets = failing.loadgen["buckets"]
    requests = sum(b["requests"] for b in buckets)

    assert failing.done["ok"] is True
    assert failing.loadgen["verification"]["ok"] is True
    assert requests > 0
    # Every request after the verified first one got a 500, and every one is a failure.
    assert sum(b["failures"] for b in buckets) == requests
    # Locust's own account of the cell starts with the load, after the verification, as ours.
    assert failing.locust_requests == requests
    assert failing.locust_failures == failing.locust_requests
    assert set(failing.server.sent) == {("/cpu", "ms=3")}


def test_a_request_the_app_does_not_answer_as_expected_stops_everything(tmp_path: Path) -> None:
    httpd, server = _start_server(failing=set())
    try:
        run = _run(
            tmp_path,
            server,
            "RequestsUser",
            workers=1,
            fb={
                "requests": requests_option({"path": "/hello"}, {"path": "/missing"}),
                "steps": "2",
                "warmup": 1,
                "measure": 1,
            },
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.done["ok"] is False
    assert run.loadgen["verification"] == {
        "ok": False,
        "checked": ["GET /hello", "GET /missing"],
        "failure": {
            "request": "GET /missing",
            "status": 404,
            "expected": "2xx",
            "body": "no such page\nsecond line",
        },
    }
    assert run.loadgen["steps"] == []
    # One request each, and no load.
    assert server.sent == [("/hello", ""), ("/missing", "")]


def test_a_weighted_mix_with_bodies_headers_and_statuses(tmp_path: Path) -> None:
    httpd, server = _start_server(failing=set())
    mix = requests_option(
        {"path": "/hello", "weight": 3},
        {
            "path": "/form",
            "method": "POST",
            "form": {"title": "hi there"},
            "headers": {"X-Test": "yes"},
        },
        {"path": "/form", "method": "PUT", "json": json.dumps({"n": 1})},
        {"path": "/redirect", "expect": [302]},
        # A 4xx the workload expects is no failure (Locust's own default would count it one).
        {"path": "/nowhere", "expect": [404]},
    )
    try:
        run = _run(
            tmp_path,
            server,
            "RequestsUser",
            workers=1,
            fb={"requests": mix, "steps": "2", "warmup": 1, "measure": 2},
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.master_code == 0
    assert run.locust_failures == 0
    details = server.details
    form = "application/x-www-form-urlencoded; charset=utf-8"
    assert ("POST", "/form", form, "title=hi+there", "yes") in details
    assert ("PUT", "/form", "application/json", '{"n": 1}', "") in details
    # A redirect is the answer expected, not followed: /hello only comes from its own share.
    counts = {path: sum(1 for d in details if d[1] == path) for path in ("/hello", "/redirect")}
    assert 2 * counts["/redirect"] < counts["/hello"] < 5 * counts["/redirect"]


USER_LOCUSTFILE = """
from locust import HttpUser, between, task


class Visitor(HttpUser):
    wait_time = between(0.01, 0.02)

    @task
    def home(self):
        self.client.get("/hello")
        self.client.get("/io?ms=1")


class Broken(HttpUser):
    @task
    def missing(self):
        self.client.get("/missing")
"""


def test_a_user_class_of_ones_own_is_driven_and_recorded(tmp_path: Path) -> None:
    extra = tmp_path / "theirs.py"
    extra.write_text(USER_LOCUSTFILE)
    httpd, server = _start_server(failing=set())
    try:
        run = _run(
            tmp_path,
            server,
            "Visitor",
            workers=1,
            fb={"steps": "1,2", "warmup": 1, "measure": 1},
            extra=extra,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.master_code == 0
    assert run.loadgen["workload"] == {
        "user_class": "Visitor",
        "path": str(extra),
        "wait_time": "between(0.01, 0.02)",
    }
    assert run.loadgen["verification"]["checked"] == ["GET /hello", "GET /io?ms=1"]
    assert sum(b["requests"] for b in run.loadgen["buckets"]) == run.locust_requests > 10


def test_a_user_class_whose_requests_fail_gets_no_load(tmp_path: Path) -> None:
    extra = tmp_path / "theirs.py"
    extra.write_text(USER_LOCUSTFILE)
    httpd, server = _start_server(failing=set())
    try:
        run = _run(
            tmp_path, server, "Broken", workers=1, fb={"steps": "2", "measure": 1}, extra=extra
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.done["ok"] is False
    failure = run.loadgen["verification"]["failure"]
    assert (failure["request"], failure["status"]) == ("GET /missing", 404)
    assert "404" in failure["expected"]
    assert server.sent == [("/missing", "")]


@pytest.mark.parametrize(
    ("fb", "message"),
    [
        ({"steps": "1,0"}, "argument --fb-steps: expected comma-separated"),
        ({"measure": "1.5"}, "argument --fb-measure: expected a whole number"),
        ({"timeout": "0"}, "argument --fb-timeout: expected seconds"),
        ({"requests": '{"path": "/"}'}, "argument --fb-requests: expected"),
    ],
)
def test_a_cell_with_bad_options_is_refused_in_one_line_and_the_next_runs(
    tmp_path: Path, fb: dict[str, object], message: str
) -> None:
    httpd, server = _start_server(failing=set())
    swarm = Swarm(tmp_path, workers=1)
    try:
        swarm.next_event("ready")
        refused = swarm.order("bad", "RequestsUser", _argv(server, fb))
        good = swarm.order(
            "good", "RequestsUser", _argv(server, {"steps": "1", "warmup": 1, "measure": 1})
        )
    finally:
        swarm.close()
        httpd.shutdown()
        httpd.server_close()
    assert (refused["ok"], refused["error"].splitlines()) == (False, [refused["error"]])
    assert message in refused["error"]
    assert not (tmp_path / "bad").exists()
    assert good["ok"] is True


def test_a_cell_naming_a_user_class_that_is_nowhere_is_refused(tmp_path: Path) -> None:
    httpd, server = _start_server(failing=set())
    swarm = Swarm(tmp_path, workers=1)
    try:
        swarm.next_event("ready")
        refused = swarm.order("cell", "Nobody", _argv(server, {"steps": "1"}))
    finally:
        swarm.close()
        httpd.shutdown()
        httpd.server_close()
    assert refused["ok"] is False
    assert refused["error"].startswith("no user class Nobody (known: OpenLoopUser, RequestsUser")
    assert server.sent == []


def test_cells_one_after_the_other_on_one_swarm_keep_apart(tmp_path: Path) -> None:
    httpd, server = _start_server(failing=set())
    swarm = Swarm(tmp_path, workers=2)
    cells = {"first": "/io?ms=1", "second": "/hello"}
    try:
        swarm.next_event("ready")
        done = {
            cell: swarm.order(
                cell,
                "RequestsUser",
                _argv(
                    server,
                    {"requests": requests_option({"path": path}), "steps": "2", "measure": 1},
                ),
            )
            for cell, path in cells.items()
        }
        master_code, worker_codes = swarm.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert all(event["ok"] for event in done.values())
    assert (master_code, worker_codes) == (0, [0, 0])
    runs = {c: _cell_run(tmp_path / c, done[c], 0, [], server) for c in cells}
    first, second = runs["first"].loadgen, runs["second"].loadgen
    # Each cell's file holds its own requests, and Locust's account of it agrees.
    assert first["workload"]["path"] == "GET /io?ms=1"
    assert second["workload"]["path"] == "GET /hello"
    for run in runs.values():
        assert sum(b["requests"] for b in run.loadgen["buckets"]) == run.locust_requests > 0
        assert run.loadgen["workers"] == 2
    # No user ran between the cells: nothing completed after the first cell's last window
    # but what was in flight then, nothing before the second cell's first step.
    first_end = first["steps"][-1]["measure_end"]
    assert all(b["t"] <= first_end for b in first["buckets"])
    assert all(b["t"] >= second["steps"][0]["start"] for b in second["buckets"])
    sent = [p for p, _ in server.sent]
    assert sent == sorted(sent, key=lambda p: p != "/io")


def test_a_saturated_staircase_stops_climbing_and_says_why(tmp_path: Path) -> None:
    httpd, server = _start_server(failing=set())
    try:
        run = _run(
            tmp_path,
            server,
            "RequestsUser",
            workers=1,
            fb={
                "requests": requests_option({"path": "/serial"}),
                "steps": "1,4,16,32",
                "warmup": 1,
                "measure": 2,
                "stop-p99-ms": 80,
            },
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.master_code == 0
    ran = [s["users"] for s in run.loadgen["steps"]]
    # 16 users wait 160 ms in line; a loaded machine may pass 80 ms at 4 users already.
    assert ran in ([1, 4, 16], [1, 4])
    skipped = run.loadgen["skipped"]
    assert [s["users"] for s in skipped] == [u for u in (1, 4, 16, 32) if u not in ran]
    assert all(s["reason"].startswith("p99 ") for s in skipped)
    assert skipped[0]["reason"].endswith(f" ms at {ran[-1]} users passed 80 ms")
    # No user of a skipped step was ever started.
    last_window = run.loadgen["steps"][-1]["measure_end"]
    assert all(b["t"] < last_window + 3 for b in run.loadgen["buckets"])


def test_a_swarm_lives_while_heartbeats_come_and_ends_without_them(tmp_path: Path) -> None:
    """A killed orchestrator sends no more heartbeats: its swarm ends by itself, workers too."""
    idle_s = 4.0
    swarm = Swarm(tmp_path, 1, idle_timeout_s=idle_s)
    try:
        assert swarm.next_event("ready")["event"] == "ready"
        beats_until = time.monotonic() + 2 * idle_s
        beat = 0
        while time.monotonic() < beats_until:
            beat += 1
            (tmp_path / "inbox" / HEARTBEAT_FILE).write_text(str(beat))
            time.sleep(0.5)
        # Twice its idle timeout without an order: the heartbeats kept it.
        assert swarm.master.poll() is None
        assert swarm.master.wait(timeout=idle_s + 20) == 0
        assert [worker.wait(timeout=20) for worker in swarm.workers] == [0]
    finally:
        swarm.close()
