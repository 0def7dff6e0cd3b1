"""Serve the app (appload.py) the way people "make Flask async": wrapped in an ASGI adapter and
run by uvicorn.

    python -m flaskbench_target.asgiserve --adapter a2wsgi|asgiref [--threads N] --workers W \\
        --backlog B --host 127.0.0.1 --port P [--[no-]reset-contextvars]

What one process can have in flight is the adapter's doing, not uvicorn's:

- a2wsgi's WSGIMiddleware runs every request in a ThreadPoolExecutor of `workers` threads, one
  executor per middleware, so per process (a2wsgi/wsgi.py); --threads sets that pool.
- asgiref's WsgiToAsgi runs every request through `run_wsgi_app`, a `@sync_to_async` method,
  which is thread-sensitive by default (asgiref/wsgi.py); with no sync code around it, that
  sends every call to `SyncToAsync.single_thread_executor`, a ThreadPoolExecutor with one
  thread (asgiref/sync.py). One request at a time per process, whatever the event loop does;
  there is no pool to size.

asgiref also never closes the app's response iterable (run_wsgi_app iterates it and returns;
PEP 3333 asks the server to call close()), so Flask's call_on_close callbacks, and the gauge's
count, would wait forever. The response is closed here when asgiref lets go of it, which CPython
does the moment run_wsgi_app's loop ends.

uvicorn runs with every setting that changes results given explicitly (plain asyncio and h11,
no access log, no proxy headers, no lifespan: WSGI apps have none). --reset-contextvars is
uvicorn's opt-in (off by default) to start each request's task in a fresh context; without
either flag it is not passed at all (uvicorns older than the option). Without it,
a request that arrives on a keep-alive connection while the previous response is being sent
starts in that send's context, which for asgiref holds the previous request's executor
(AsyncToSync.executors, asgiref/sync.py, a context-local): asgiref submits the new request to
it, finds it has quit, and the request fails with a 500 "CurrentThreadExecutor already quit or
is broken" (django/asgiref#491).

With --workers above 1, uvicorn spawns worker processes that import
`flaskbench_target.asgiserve:application`, so the adapter's settings reach them through
FLASKBENCH_ASGI in the environment, and the supervisor never loads the app. It binds the socket
for them itself, and asyncio then leaves TCP_NODELAY off on the connections (Kludex/uvicorn#3149):
the report shows the resulting 40 ms per keep-alive request as time outside the app, as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ADAPTERS = ("a2wsgi", "asgiref")
# uvicorn's exit status for a worker that could not start (uvicorn/config.py).
STARTUP_FAILURE = 3
SETTINGS_ENV = "FLASKBENCH_ASGI"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flaskbench_target.asgiserve", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--adapter", choices=ADAPTERS, required=True)
    parser.add_argument("--threads", type=int, help="a2wsgi's thread pool per process")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--backlog", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reset-contextvars", action=argparse.BooleanOptionalAction)
    args = parser.parse_args(argv)
    if args.adapter == "a2wsgi" and args.threads is None:
        parser.error("--adapter a2wsgi needs --threads")
    if args.adapter == "asgiref" and args.threads is not None:
        parser.error("asgiref's WsgiToAsgi has no thread pool: leave out --threads")
    if min(args.workers, args.backlog, 1 if args.threads is None else args.threads) < 1:
        parser.error("--threads, --workers and --backlog must be 1 or more")
    return args


def build(adapter: str, threads: int | None) -> Any:
    """The ASGI app: the gauged WSGI app (appload.py) inside the adapter."""
    from flaskbench_target.appload import application as wsgi_app

    if adapter == "a2wsgi":
        from a2wsgi import WSGIMiddleware
        from a2wsgi.wsgi_typing import WSGIApp

        # The same callable: a2wsgi types PEP 3333's environ and start_response its own way
        # (a TypedDict, a Protocol), typeshed another (a dict, a Protocol of its own).
        return WSGIMiddleware(cast(WSGIApp, wsgi_app), workers=threads or 1)
    from asgiref.wsgi import WsgiToAsgi

    return WsgiToAsgi(closed_when_released(wsgi_app))


def closed_when_released(app: WSGIApplication) -> WSGIApplication:
    """The app, with its response closed once the server stops iterating it (see above)."""

    def call(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return _closing(app(environ, start_response))

    return call


def _closing(body: Iterable[bytes]) -> Iterator[bytes]:
    # A for loop, not `yield from`: that would close the body once more when this is closed.
    # Once started (asgiref iterates it at once), dropping this generator runs the finally.
    try:
        for chunk in body:  # noqa: UP028 (see above)
            yield chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


_built: list[Any] = []


def __getattr__(name: str) -> Any:
    """`application`, built on first use: uvicorn's workers import it by name."""
    if name != "application":
        raise AttributeError(name)
    if not _built:
        settings = json.loads(os.environ[SETTINGS_ENV])
        try:
            _built.append(build(settings["adapter"], settings["threads"]))
        except Exception:
            # uvicorn's supervisor respawns a worker that dies any other way, forever; this
            # exit status makes it stop (appload has printed the cause in one line).
            traceback.print_exc()
            raise SystemExit(STARTUP_FAILURE) from None
    return _built[0]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ[SETTINGS_ENV] = json.dumps({"adapter": args.adapter, "threads": args.threads})
    import uvicorn

    reset = {} if args.reset_contextvars is None else {"reset_contextvars": args.reset_contextvars}
    uvicorn.run(
        "flaskbench_target.asgiserve:application",
        host=args.host,
        port=args.port,
        workers=args.workers,
        backlog=args.backlog,
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_level="info",
        proxy_headers=False,
        server_header=True,
        date_header=True,
        limit_concurrency=None,
        limit_max_requests=None,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
        **reset,
    )


if __name__ == "__main__":
    main()
