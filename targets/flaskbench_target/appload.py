"""The WSGI app every server serves: the one FLASKBENCH_APP names, wrapped in the gauge.

Every server is pointed at `flaskbench_target.appload:application`, so the app is loaded the
same way whatever serves it. FLASKBENCH_APP is written as WSGI servers' command lines take an app:
`module:variable`, or `module:factory(...)` with literal arguments, e.g. `flaskr:create_app()`;
a module alone means `module:application`. It defaults to the built-in app,
`flaskbench_target.builtin_app:app`. The module is imported from the app's directory, which the
launcher puts first on PYTHONPATH, before the directory this package is in. When
FLASKBENCH_GAUGE names a gauge file, every request is counted by the concurrency gauge; otherwise
there is no gauge at all, which is the baseline for measuring its overhead.

    python -m flaskbench_target.appload --check     load the app as a server would, say what it is
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

APP_ENV = "FLASKBENCH_APP"
GAUGE_ENV = "FLASKBENCH_GAUGE"
BUILT_IN = "flaskbench_target.builtin_app:app"


class AppLoadError(Exception):
    """The app cannot be loaded; the message says why in one line."""


def parse_spec(spec: str) -> tuple[str, str, list[Any], dict[str, Any]]:
    """`module:name` or `module:factory(args)` -> (module, name, args, kwargs); args is [] and
    kwargs {} for a plain variable, and name ends in "()" for a factory."""
    module, colon, expression = spec.partition(":")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise AppLoadError(f"{spec!r}: {module!r} is not a module name")
    if colon and not expression:
        raise AppLoadError(f"{spec!r}: cannot read an empty name after ':'")
    try:
        node = ast.parse(expression or "application", mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"{spec!r}: cannot read {expression!r}") from None
    if isinstance(node, ast.Name):
        return module, node.id, [], {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(arg) for arg in node.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise AppLoadError(
                f"{spec!r}: a factory's arguments must be literals (strings, numbers...)"
            ) from None
        return module, node.func.id + "()", args, kwargs
    raise AppLoadError(f"{spec!r}: write module:variable or module:factory(literal args)")


def load(spec: str) -> WSGIApplication:
    """Import the app `spec` names; raise AppLoadError with the cause in one line."""
    module_name, name, args, kwargs = parse_spec(spec)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"importing {module_name} failed: {_one_line(exc)}") from exc
    attribute = name.removesuffix("()")
    if not hasattr(module, attribute):
        raise AppLoadError(f"module {module_name} has no {attribute!r}")
    found = getattr(module, attribute)
    if name.endswith("()"):
        try:
            found = found(*args, **kwargs)
        except Exception as exc:
            raise AppLoadError(f"{spec} raised {_one_line(exc)}") from exc
    if not callable(found):
        raise AppLoadError(f"{spec} is a {type(found).__name__}, not a WSGI app")
    app: WSGIApplication = found
    return app


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def gauged(app: WSGIApplication) -> WSGIApplication:
    """The app inside the gauge, when the launcher made one."""
    path = os.environ.get(GAUGE_ENV)
    if not path:
        return app
    from flaskbench_target.gauge import Gauge, GaugeMiddleware

    return GaugeMiddleware(app, Gauge(path))


def _application() -> WSGIApplication:
    spec = os.environ.get(APP_ENV, BUILT_IN)
    try:
        return gauged(load(spec))
    except AppLoadError as exc:
        # The server's own traceback would bury the cause; this line is what the cell reports.
        print(f"appload: cannot load {spec}: {exc}", file=sys.stderr, flush=True)
        raise


def check() -> int:
    """Load the app as a server would; one line on stdout, the traceback on stderr if it fails."""
    spec = os.environ.get(APP_ENV, BUILT_IN)
    try:
        app = load(spec)
    except AppLoadError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"error: {exc}")
        return 1
    print(f"ok: {spec} is {_describe(app)}")
    return 0


def _describe(app: object) -> str:
    if inspect.isfunction(app):
        return f"the function {app.__module__}.{app.__qualname__}"
    kind = type(app)
    return f"a {kind.__module__}.{kind.__qualname__}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--check"]:
        sys.exit("usage: python -m flaskbench_target.appload --check")
    sys.exit(check())
else:
    application = _application()
