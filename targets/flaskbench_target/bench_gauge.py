"""Micro-benchmark of the gauge: what one request pays for being counted.

    python bench_gauge.py [--pairs N] [--json]

Prints nanoseconds per enter+leave pair (one thread; four threads of one process; two processes
of four threads each, all pinned to one CPU as in a 1-core target), and per WSGI call of /hello
with the gauge off and on, straight into the app without a server (a real server adds its own
per-request cost, so the share is lower there). `make accuracy` runs it pinned where the target
ran, to set the gauge's cost per request beside the throughput it measured. The same for a bare
app that returns what a Flask view's response does (a Werkzeug ClosingIterator of one chunk)
without Flask's own work: on a shared machine its on-off difference, the gauge's whole cost per
request, is far steadier than /hello's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from werkzeug.wsgi import ClosingIterator

from flaskbench_target import gauge
from flaskbench_target.builtin_app import app

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


ROUNDS = 5
# WSGI calls: more and shorter rounds, as a burst of noise can spoil a round of 100 us calls.
WSGI_ROUNDS = 15


def pairs_ns(counter: gauge.Gauge, pairs: int) -> float:
    # Attribute lookups on every call, as GaugeMiddleware does them.
    start = time.perf_counter_ns()
    for _ in range(pairs):
        counter.enter()
        counter.leave()
    return (time.perf_counter_ns() - start) / pairs


def in_threads(counter: gauge.Gauge, pairs: int, threads: int) -> float:
    """Wall-clock ns per pair with `threads` threads each doing `pairs` pairs."""
    workers = [threading.Thread(target=pairs_ns, args=(counter, pairs)) for _ in range(threads)]
    start = time.perf_counter_ns()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter_ns() - start) / (pairs * threads)


def in_pinned_processes(counter: gauge.Gauge, pairs: int, processes: int, threads: int) -> float:
    """Wall-clock ns per pair with `processes` forked processes of `threads` threads each, all on
    one CPU: the processes then take turns on it, as the workers of a 1-core target do."""
    cpu = min(os.sched_getaffinity(0))
    start = time.perf_counter_ns()
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.sched_setaffinity(0, {cpu})
                in_threads(counter, pairs, threads)
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return (time.perf_counter_ns() - start) / (pairs * threads * processes)


def wsgi_ns(wsgi: WSGIApplication, calls: int) -> float:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }

    def start_response(*_args: object) -> Callable[[bytes], object]:
        return len

    def one() -> None:
        body: Iterable[bytes] = wsgi(dict(environ), start_response)
        for _chunk in body:
            pass
        body.close()  # type: ignore[attr-defined]

    start = time.perf_counter_ns()
    for _ in range(calls):
        one()
    return (time.perf_counter_ns() - start) / calls


def bare(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The end of every Flask request, without the rest of it."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return ClosingIterator(iter([b"hello"]), [])


def off_and_on(plain: WSGIApplication, gauged: WSGIApplication, calls: int) -> tuple[float, float]:
    """The best round of each, alternated: the least disturbed runs."""
    rounds = [(wsgi_ns(plain, calls), wsgi_ns(gauged, calls)) for _ in range(WSGI_ROUNDS)]
    return min(off for off, _ in rounds), min(on for _, on in rounds)


def measure(pairs: int) -> dict[str, float]:
    """Nanoseconds per enter+leave pair in each setting, and per WSGI call off and on."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        path = os.path.join(directory, "gauge")
        gauge.create(path)
        counter = gauge.Gauge(path)
        pairs_ns(counter, 1000)  # warm up, and take the slot
        single = min(pairs_ns(counter, pairs // ROUNDS) for _ in range(ROUNDS))
        threaded = in_threads(counter, pairs // 4, 4)
        pinned = in_pinned_processes(counter, pairs // 8, 2, 4)
        calls = max(pairs // 200, 1000)
        hello = off_and_on(app.wsgi_app, gauge.GaugeMiddleware(app.wsgi_app, counter), calls)
        bare_calls = off_and_on(bare, gauge.GaugeMiddleware(bare, counter), calls * 5)
        counter.close()
    return {
        "pair_ns": single,
        "pair_4_threads_ns": threaded,
        "pair_2x4_pinned_ns": pinned,
        "wsgi_off_ns": hello[0],
        "wsgi_on_ns": hello[1],
        "bare_off_ns": bare_calls[0],
        "bare_on_ns": bare_calls[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    figures = measure(args.pairs)
    if args.json:
        print(json.dumps(figures))
        return
    labels = {
        "pair_ns": f"enter+leave, 1 thread (best of {ROUNDS})",
        "pair_4_threads_ns": "enter+leave, 4 threads",
        "pair_2x4_pinned_ns": "enter+leave, 2 processes x 4 on 1 CPU",
        "wsgi_off_ns": "/hello WSGI call, gauge off",
        "wsgi_on_ns": "/hello WSGI call, gauge on",
        "bare_off_ns": "bare WSGI call, gauge off",
        "bare_on_ns": "bare WSGI call, gauge on",
    }
    for key, label in labels.items():
        print(f"{label + ':':<40}{figures[key]:7.0f} ns")
    ratio = figures["wsgi_on_ns"] / figures["wsgi_off_ns"]
    per_request = figures["bare_on_ns"] - figures["bare_off_ns"]
    print(f"{'gauge on / off, /hello:':<40}{ratio:7.3f}")
    print(f"{'gauge per request (bare on - off):':<40}{per_request:7.0f} ns")


if __name__ == "__main__":
    main()
