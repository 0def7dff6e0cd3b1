"""Workloads: what each user of the staircase asks the app for, back to back.

Three forms, one per `[workloads.NAME]` table:
- the built-in app's endpoints by their work: `io_ms` (sleep) and `cpu_ms` (burn CPU), or the
  bytes it moves: `upload` (a body of that size to /upload) or `download` (/bytes?n= that
  size), for which theory knows each request's cost in advance;
- requests to any app: one (`path`, `method`, `headers`, `form` or `json`, `expect`) or a
  weighted mix (`requests = [{ path = "/", weight = 3 }, ...]` with the same keys);
- a Locust user class of the user's own (`locustfile`, `user_class`).
Every request is verified once before load, and during load a status it does not expect is a
failure, never throughput. Whatever the form but a Locust file, the clients' pace on the wire
(`client`), their connections (`keepalive`) and an open loop (`rates`, `arrival`) may be set too
(clients.py, openloop.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flaskbench.config.app import BUILT_IN_PATHS
from flaskbench.config.clients import Client, parse_client, parse_keepalive
from flaskbench.config.openloop import OpenLoop, open_loop_from_meta, read_open_loop
from flaskbench.config.units import format_size, parse_size

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MODEL_KEYS = {"io_ms", "cpu_ms", "upload", "download"}
REQUEST_KEYS = {"path", "method", "headers", "form", "json", "body_size", "expect"}
MIX_KEYS = {*REQUEST_KEYS, "weight"}
LOCUST_KEYS = {"locustfile", "user_class"}
# How the clients behave, whatever they ask for (not with a Locust file of the user's own).
CLIENT_KEYS = {"client", "keepalive", "rates", "arrival"}
WORKLOAD_KEYS = MODEL_KEYS | REQUEST_KEYS | LOCUST_KEYS | CLIENT_KEYS | {"requests"}
MAX_WORK_MS = 60_000
# The built-in app's /upload and /bytes take at most this much.
MAX_TRANSFER_BYTES = 1024**3


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] | None = None
    # The JSON body as text, so that the request stays hashable and is recorded as sent.
    json: str | None = None
    # Statuses that count as success; empty means any 2xx.
    expect: tuple[int, ...] = ()
    weight: int = 1
    # A body of this many bytes (application/octet-stream), instead of a form or JSON.
    body_size: int | None = None

    @property
    def expected(self) -> str:
        return " or ".join(map(str, self.expect)) if self.expect else "2xx"

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Workload:
    name: str
    io_ms: int = 0
    cpu_ms: int = 0
    requests: tuple[Request, ...] = ()
    # A user's own Locust file (absolute path) and the user class in it.
    locustfile: str | None = None
    user_class: str | None = None
    # The built-in app's transfers: a body of this many bytes to /upload, or /bytes?n= this many.
    upload_bytes: int = 0
    download_bytes: int = 0
    # How the clients behave on the wire (None: as fast as the network allows), whether they
    # keep connections alive, and an open loop's offered rates (None: a closed loop of users).
    client: Client | None = None
    keepalive: bool = True
    open_loop: OpenLoop | None = None

    @property
    def modelled(self) -> bool:
        """The built-in app's work, known before measuring: theory can predict it exactly."""
        return not self.requests and self.locustfile is None

    @property
    def kind(self) -> str:
        if self.locustfile is not None:
            return "locustfile"
        if self.requests:
            return "requests"
        if self.upload_bytes:
            return "upload"
        if self.download_bytes:
            return "download"
        if self.io_ms and self.cpu_ms:
            return "mixed"
        if self.io_ms:
            return "io"
        return "cpu" if self.cpu_ms else "noop"

    @property
    def traffic(self) -> tuple[Request, ...]:
        """The requests users send (none for a Locust file: its user class decides)."""
        if self.requests or self.locustfile is not None:
            return self.requests
        if self.upload_bytes:
            return (Request("/upload", "POST", expect=(200,), body_size=self.upload_bytes),)
        path = {
            "noop": "/hello",
            "io": f"/io?ms={self.io_ms}",
            "cpu": f"/cpu?ms={self.cpu_ms}",
            "mixed": f"/mixed?io={self.io_ms}&cpu={self.cpu_ms}",
            "download": f"/bytes?n={self.download_bytes}",
        }[self.kind]
        return (Request(path, expect=(200,)),)

    @property
    def manner(self) -> str:
        """How its clients behave where that is not the default (fast, keep-alive, closed loop):
        for the report's headings, "" when it is."""
        parts = [self.client.describe()] if self.client else []
        if not self.keepalive:
            parts.append("a new connection per request")
        if self.open_loop:
            parts.append(self.open_loop.describe())
        return "; ".join(parts)

    @property
    def path(self) -> str:
        """How the report names the workload's traffic."""
        if self.locustfile is not None:
            return f"{Path(self.locustfile).name}:{self.user_class}"
        traffic = self.traffic
        if len(traffic) == 1:
            request = traffic[0]
            text = request.path if request.method == "GET" else request.describe()
            return text + (f" ({format_size(request.body_size)})" if request.body_size else "")
        total = sum(r.weight for r in traffic)
        return ", ".join(f"{r.describe()} {r.weight / total:.0%}" for r in traffic)

    def traffic_json(self) -> str:
        """The requests as the Locust side reads them (--fb-requests)."""
        return json.dumps([request_to_json(r) for r in self.traffic])


def request_to_json(request: Request) -> dict[str, Any]:
    return {
        "path": request.path,
        "method": request.method,
        "headers": dict(request.headers),
        "form": dict(request.form) if request.form is not None else None,
        "json": request.json,
        "expect": list(request.expect),
        "weight": request.weight,
        "body_size": request.body_size,
    }


def workload_from_meta(spec: Mapping[str, Any]) -> Workload:
    """A workload as meta.json recorded it (dataclasses.asdict of Workload)."""
    return Workload(
        name=str(spec["name"]),
        io_ms=int(spec.get("io_ms", 0)),
        cpu_ms=int(spec.get("cpu_ms", 0)),
        requests=tuple(
            Request(
                path=str(r["path"]),
                method=str(r.get("method", "GET")),
                headers=tuple((str(k), str(v)) for k, v in r.get("headers", ())),
                form=tuple((str(k), str(v)) for k, v in r["form"])
                if r.get("form") is not None
                else None,
                json=r.get("json"),
                expect=tuple(int(s) for s in r.get("expect", ())),
                weight=int(r.get("weight", 1)),
                body_size=r.get("body_size"),
            )
            for r in spec.get("requests", ())
        ),
        locustfile=spec.get("locustfile"),
        user_class=spec.get("user_class"),
        # Runs before slow clients and open loops have none of these: fast, kept, closed.
        upload_bytes=int(spec.get("upload_bytes", 0)),
        download_bytes=int(spec.get("download_bytes", 0)),
        client=Client(**client) if isinstance(client := spec.get("client"), dict) else None,
        keepalive=bool(spec.get("keepalive", True)),
        open_loop=open_loop_from_meta(spec.get("open_loop")),
    )


# (key path below the workload, message) -> None: how problems reach the config's report.
Report = Callable[[tuple[str, ...], str], None]


def parse_workload(
    name: str,
    raw: Mapping[str, Any],
    base: Path,
    own_app: bool,
    report: Report,
    open_loop: OpenLoop | None = None,
) -> Workload | None:
    """One [workloads.NAME] table; relative files are resolved against `base`. `open_loop`:
    [load]'s rates, which a workload of requests walks unless it sets its own."""
    for key in raw:
        if key not in WORKLOAD_KEYS:
            report((key,), f"unknown key; known keys here: {', '.join(sorted(WORKLOAD_KEYS))}")
    form = _form(name, raw, base, own_app, report)
    if form is not None and form.locustfile is not None:
        return _own_clients(form, raw, open_loop, report)
    # Checked whatever the form, so that every problem is said at once.
    clients = _clients(raw, open_loop, report)
    return replace(form, **clients) if form is not None and clients is not None else None


def _clients(
    raw: Mapping[str, Any], default: OpenLoop | None, report: Report
) -> dict[str, Any] | None:
    """The clients' keys of a workload of flaskbench's own requests, as Workload's fields."""
    before = _Counter(report)
    client = parse_client(raw["client"], before) if "client" in raw else None
    keepalive = parse_keepalive(raw.get("keepalive", True), before)
    open_loop, _ = read_open_loop(raw, lambda key, message: before((key,), message), default)
    if before.count:
        return None
    return {"client": client, "keepalive": bool(keepalive), "open_loop": open_loop}


def _own_clients(
    workload: Workload, raw: Mapping[str, Any], open_loop: OpenLoop | None, report: Report
) -> Workload | None:
    """A Locust user class of the user's own sends as it does: the clients' keys cannot apply."""
    keys = sorted(CLIENT_KEYS & set(raw))
    if keys:
        report(
            (keys[0],),
            "applies to flaskbench's own requests (path, requests, io_ms...), not to a Locust "
            "user class of your own, which opens its connections and paces itself",
        )
        return None
    if open_loop is not None:
        report(
            ("locustfile",),
            "[load] rates make every workload an open loop, which sends flaskbench's own "
            "requests; a Locust user class of your own walks users: give it a config of its own",
        )
        return None
    return workload


def _form(
    name: str, raw: Mapping[str, Any], base: Path, own_app: bool, report: Report
) -> Workload | None:
    """The workload's requests, in whichever of its forms the table is written."""
    forms = [
        form
        for form, keys in (
            ("io_ms/cpu_ms", {"io_ms", "cpu_ms"}),
            ("upload/download", {"upload", "download"}),
            ("path", REQUEST_KEYS),
            ("requests", {"requests"}),
            ("locustfile", LOCUST_KEYS),
        )
        if keys & set(raw)
    ]
    if len(forms) > 1:
        report(
            (),
            f"mixes {' and '.join(forms)}; a workload is one of: io_ms/cpu_ms/upload/download "
            "(the built-in app), path (one request), requests (a weighted mix), locustfile",
        )
        return None
    form = forms[0] if forms else "io_ms/cpu_ms"
    if form in ("io_ms/cpu_ms", "upload/download"):
        return _modelled(name, raw, own_app, report)
    if form == "path":
        # Its keys were checked above, with the workload's.
        request = _request(raw, (), own_app, report, None)
        return Workload(name, requests=(request,)) if request else None
    if form == "requests":
        return _mix(name, raw["requests"], own_app, report)
    return _locust(name, raw, base, report)


def _modelled(name: str, raw: Mapping[str, Any], own_app: bool, report: Report) -> Workload | None:
    if own_app:
        report(
            tuple(k for k in ("io_ms", "cpu_ms", "upload", "download") if k in raw)[:1],
            "io_ms, cpu_ms, upload and download are endpoints of the built-in app, not of "
            '[app]; describe the requests instead, e.g. path = "/"',
        )
        return None
    transfers = [key for key in ("upload", "download") if key in raw]
    if transfers:
        return _transfer(name, raw, transfers, report)
    values = {}
    for key in ("io_ms", "cpu_ms"):
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WORK_MS:
            report((key,), f"must be an integer between 0 and {MAX_WORK_MS}, got {value!r}")
            return None
        values[key] = value
    return Workload(name, io_ms=values["io_ms"], cpu_ms=values["cpu_ms"])


def _transfer(
    name: str, raw: Mapping[str, Any], keys: list[str], report: Report
) -> Workload | None:
    """`upload` (a body to /upload) or `download` (/bytes?n=): bytes the built-in app moves."""
    if len(keys) > 1:
        report((keys[1],), "a workload uploads or downloads, one of them; make two workloads")
        return None
    key = keys[0]
    try:
        size = parse_size(raw[key])
    except ValueError as exc:
        report((key,), str(exc))
        return None
    if size > MAX_TRANSFER_BYTES:
        report((key,), f"must be at most {format_size(MAX_TRANSFER_BYTES)}, got {raw[key]!r}")
        return None
    if key == "upload":
        return Workload(name, upload_bytes=size)
    return Workload(name, download_bytes=size)


def _mix(name: str, value: object, own_app: bool, report: Report) -> Workload | None:
    if not isinstance(value, list) or not value:
        report(("requests",), 'must be a non-empty list like [{ path = "/", weight = 3 }]')
        return None
    requests = []
    for index, item in enumerate(value):
        where = ("requests", str(index))
        if not isinstance(item, dict):
            report(where, 'must be a table like { path = "/", weight = 1 }')
            return None
        request = _request(item, where, own_app, report, MIX_KEYS)
        if request is None:
            return None
        requests.append(request)
    return Workload(name, requests=tuple(requests))


def _request(
    raw: Mapping[str, Any],
    where: tuple[str, ...],
    own_app: bool,
    report: Report,
    keys: set[str] | None,
) -> Request | None:
    before = _Counter(report)
    for key in raw:
        if keys is not None and key not in keys:
            before((*where, key), f"unknown key; known keys here: {', '.join(sorted(keys))}")
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        before((*where, "path"), f"must be a path starting with '/', got {path!r}")
    elif not own_app and path.split("?", 1)[0] not in BUILT_IN_PATHS:
        before(
            (*where, "path"),
            f"the built-in app has no {path.split('?', 1)[0]} (it serves "
            f"{', '.join(BUILT_IN_PATHS)}); set [app] to benchmark an app of your own",
        )
    method = raw.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        before((*where, "method"), f"must be one of {', '.join(METHODS)}, got {method!r}")
    headers = _strings(raw.get("headers", {}), (*where, "headers"), before)
    form = _strings(raw["form"], (*where, "form"), before) if "form" in raw else None
    body = None
    if "json" in raw:
        if "form" in raw:
            before((*where, "json"), "a request has either a form or a JSON body, not both")
        body = json.dumps(raw["json"], sort_keys=True)
    body_size = _body_size(raw, (*where, "body_size"), before)
    expect = _expect(raw.get("expect"), (*where, "expect"), before)
    weight = raw.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        before((*where, "weight"), f"must be a whole number of 1 or more, got {weight!r}")
    if before.count:
        return None
    assert isinstance(path, str)
    assert isinstance(method, str)
    assert isinstance(weight, int)
    return Request(path, method.upper(), headers or (), form, body, expect, weight, body_size)


def _body_size(raw: Mapping[str, Any], where: tuple[str, ...], report: Report) -> int | None:
    if "body_size" not in raw:
        return None
    if "form" in raw or "json" in raw:
        report(where, "a request has one body: a form, JSON or body_size bytes")
        return None
    try:
        size = parse_size(raw["body_size"])
    except ValueError as exc:
        report(where, str(exc))
        return None
    if size > MAX_TRANSFER_BYTES:
        report(where, f"must be at most {format_size(MAX_TRANSFER_BYTES)}")
        return None
    return size


class _Counter:
    """Passes problems on and counts them, so a caller can tell whether any came up."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self.count = 0

    def __call__(self, key: tuple[str, ...], message: str) -> None:
        self.count += 1
        self._report(key, message)


def _strings(
    value: object, where: tuple[str, ...], report: Report
) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
    ):
        report(where, 'must be a table of strings, e.g. { name = "value" }')
        return None
    return tuple((str(k), str(v)) for k, v in value.items())


def _expect(value: object, where: tuple[str, ...], report: Report) -> tuple[int, ...]:
    if value is None:
        return ()
    statuses = value if isinstance(value, list) else [value]
    if not statuses or not all(
        isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
    ):
        report(
            where, f"must be an HTTP status or a list of them, like 200 or [200, 302]: {value!r}"
        )
        return ()
    return tuple(statuses)


def _locust(name: str, raw: Mapping[str, Any], base: Path, report: Report) -> Workload | None:
    locustfile, user_class = raw.get("locustfile"), raw.get("user_class")
    if not isinstance(locustfile, str) or not locustfile:
        report(("locustfile",), 'must name a Locust file, e.g. "loadtests/locustfile.py"')
        return None
    path = (base / locustfile).resolve()
    if not path.is_file():
        report(("locustfile",), f"{path} does not exist; give a path relative to the config file")
        return None
    if not isinstance(user_class, str) or not user_class.isidentifier():
        report(("user_class",), 'must name the user class in the Locust file, e.g. "Visitor"')
        return None
    defined = re.compile(rf"^\s*class\s+{user_class}\b", re.MULTILINE)
    if not defined.search(path.read_text(errors="replace")):
        report(("user_class",), f"{path.name} defines no class {user_class}; name one it does")
        return None
    return Workload(name, locustfile=str(path), user_class=user_class)
