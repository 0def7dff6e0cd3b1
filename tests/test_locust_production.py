"""The production shape on the Locust side, against a tiny server that records what it sees:
slow clients are slow on the wire, keepalive = false opens a connection per request, and an open
loop sends at its rate whatever the server does, times each request from when it was due and
counts what it could not send on time.

Locust runs in subprocesses only (importing it would monkey-patch this process). Bounds are what
the clients' own pace sets (a loaded machine only makes things slower) or counts.
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from swarmrun import Swarm, one_cell

pytestmark = pytest.mark.load

# One request at a time, this long each: a server an open loop can overload.
SERIAL_S = 0.05


@dataclass
class _Seen:
    port: int
    # (path, connection number, Connection header, seconds from the head to the body's end)
    requests: list[tuple[str, int, str, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent(self, path: str) -> list[tuple[str, int, str, float]]:
        return [r for r in self.requests if r[0] == path]


@pytest.fixture
def server() -> Iterator[_Seen]:
    serial = threading.Lock()
    # One handler per connection: its number tells connections apart (a client port does not:
    # on loopback the kernel reuses one in TIME_WAIT for a new connection).
    connections = itertools.count(1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            self.number = next(connections)

        def do_GET(self) -> None:
            began = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            left = length
            while left > 0:
                left -= len(self.rfile.read(min(left, 65536)))
            path, _, query = self.path.partition("?")
            seen.requests.append(
                (
                    path,
                    self.number,
                    self.headers.get("Connection", ""),
                    time.perf_counter() - began,
                )
            )
            body = b"ok"
            if path == "/bytes":
                body = b"x" * int(query.removeprefix("n="))
            if path == "/serial":
                with serial:
                    time.sleep(SERIAL_S)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if self.headers.get("Connection", "").lower() == "close":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    seen = _Seen(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_locust(
    directory: Path, url: str, user_class: str, options: dict[str, object], workers: int = 1
) -> dict[str, Any]:
    """One cell on a swarm of `workers` workers; its loadgen.json."""
    fb = [a for name, value in options.items() for a in (f"--fb-{name}", str(value)) if a != ""]
    done, _, _ = one_cell(directory, user_class, workers, ["--host", url, *fb])
    assert done["ok"], done
    return dict(json.loads((directory / "cell" / "loadgen.json").read_text()))


def requests(*items: dict[str, object]) -> str:
    return json.dumps(list(items))


def test_a_slow_client_sends_its_body_at_its_rate(tmp_path: Path, server: _Seen) -> None:
    body, rate = 262144, 262144
    run_locust(
        tmp_path,
        server.url,
        "RequestsUser",
        {
            "requests": requests({"path": "/up", "method": "POST", "body_size": body}),
            "steps": "1",
            "warmup": 1,
            "measure": 2,
            "send-rate": rate,
        },
    )
    uploads = server.sent("/up")
    assert uploads
    # What the client's small buffers can hold ahead is all the server gets early: the rest
    # arrives at the client's pace, which nothing on the machine can make faster.
    ahead = 2 * 16384 + 131072
    assert all(took >= 0.8 * (body - ahead) / rate for _, _, _, took in uploads)


def test_a_fast_client_sends_its_body_at_once(tmp_path: Path, server: _Seen) -> None:
    body = 262144
    run_locust(
        tmp_path,
        server.url,
        "RequestsUser",
        {
            "requests": requests({"path": "/up", "method": "POST", "body_size": body}),
            "steps": "1",
            "warmup": 1,
            "measure": 1,
        },
    )
    uploads = server.sent("/up")
    # The measured window of the paced test (and a long margin) against at once.
    assert uploads
    assert min(took for _, _, _, took in uploads) < 0.8 * body / 262144


def test_a_slow_reader_takes_its_response_at_its_rate(tmp_path: Path, server: _Seen) -> None:
    size, rate = 1048576, 1048576
    loadgen = run_locust(
        tmp_path,
        server.url,
        "RequestsUser",
        {
            "requests": requests({"path": f"/bytes?n={size}"}),
            "steps": "1",
            "warmup": 1,
            "measure": 3,
            "receive-rate": rate,
        },
    )
    latencies = [float(ms) for b in loadgen["buckets"] for ms in b["latency_ms"]]
    assert latencies
    assert all(ms >= 0.8 * 1000 * size / rate for ms in latencies)


@pytest.mark.parametrize("close", [True, False])
def test_keepalive_false_opens_a_connection_per_request(
    tmp_path: Path, server: _Seen, close: bool
) -> None:
    options: dict[str, object] = {
        "requests": requests({"path": "/hello"}),
        "steps": "2",
        "warmup": 1,
        "measure": 1,
    }
    if close:
        options["close"] = ""
    run_locust(tmp_path, server.url, "RequestsUser", options)
    sent = server.sent("/hello")
    connections = {number for _, number, _, _ in sent}
    assert len(sent) > 20
    if close:
        assert all(header.lower() == "close" for _, _, header, _ in sent)
        assert len(connections) == len(sent)
    else:
        # Two users' connections (and the verification's), kept.
        assert len(connections) <= 4


def test_an_open_loop_sends_at_its_rate_whatever_the_server_does(
    tmp_path: Path, server: _Seen
) -> None:
    # 40/s to a server that serves 20/s at most: requests pile up, and are still timed from
    # when they were due.
    loadgen = run_locust(
        tmp_path,
        server.url,
        "OpenLoopUser",
        {
            "requests": requests({"path": "/serial"}),
            "steps": "5,40",
            "warmup": 1,
            "measure": 3,
            "open-loop": "fixed",
        },
        workers=1,
    )
    assert loadgen["format"] == 2
    assert loadgen["open_loop"]["arrival"] == "fixed"
    steps = loadgen["steps"]
    assert [s["rate"] for s in steps] == [5, 40]
    assert [s["users"] for s in steps] == [1, 1]
    seconds = loadgen["arrivals"]["seconds"]
    for step in steps:
        inside = [a for a in seconds if step["measure_start"] <= a["t"] < step["measure_end"]]
        scheduled = sum(a["scheduled"] for a in inside)
        # Evenly spaced: exactly the rate in every second of the window, give or take one.
        assert abs(scheduled - 3 * step["rate"]) <= 2, inside
    unfinished = {u["step"]: u for u in loadgen["arrivals"]["unfinished"]}
    assert unfinished[1]["count"] > 10
    assert unfinished[1]["oldest_ms"] > 500
    # The server completes at most 1 / SERIAL_S a second; latency from the due time grows with
    # the queue, past what any request took at the server.
    last = steps[1]
    done = [b for b in loadgen["buckets"] if last["measure_start"] <= b["t"] < last["measure_end"]]
    assert sum(b["requests"] for b in done) <= 3 / SERIAL_S + 3
    assert max(float(ms) for b in done for ms in b["latency_ms"]) > 10 * 1000 * SERIAL_S


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fb-open-loop", "bursty"], "invalid choice: 'bursty'"),
        (["--fb-send-rate", "-5"], "expected bytes per second, 0 or more"),
    ],
)
def test_bad_options_are_one_line(
    tmp_path: Path, server: _Seen, args: list[str], message: str
) -> None:
    swarm = Swarm(tmp_path, workers=1)
    try:
        swarm.next_event("ready")
        refused = swarm.order("cell", "RequestsUser", ["--host", server.url, *args])
    finally:
        swarm.close()
    assert refused["ok"] is False
    assert message in refused["error"]
    assert len(refused["error"].splitlines()) == 1
