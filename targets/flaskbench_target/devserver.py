"""Serve the app (appload.py) with Werkzeug's development server, as Flask's `app.run` does.

    python devserver.py --host 127.0.0.1 --port P [--threaded | --no-threaded] [--processes N]

--threaded starts a thread per request; --no-threaded with --processes 1 serves one request at a
time; --no-threaded with --processes N forks a child per request, at most N at once.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="devserver.py", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threaded", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.exit(2, "devserver.py: error: --processes must be 1 or more\n")
    if args.threaded and args.processes > 1:
        parser.exit(
            2,
            "devserver.py: error: Werkzeug cannot combine threads and processes; "
            "use --no-threaded with --processes N, or --processes 1\n",
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Imported after the arguments are checked: a bad command line must not load the app.
    from werkzeug.serving import run_simple

    from flaskbench_target.appload import application

    # What `app.run` does without debug: no reloader and no debugger, so the server is exactly
    # what is measured, and the same call serves apps that are not Flask apps.
    run_simple(
        args.host,
        args.port,
        application,
        use_reloader=False,
        use_debugger=False,
        threaded=args.threaded,
        processes=args.processes,
    )


if __name__ == "__main__":
    main()
