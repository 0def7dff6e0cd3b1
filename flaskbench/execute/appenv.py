"""The local runner's Pythons for a run's environments (environments.py): flaskbench's own for the
built-in app with flaskbench's pins; otherwise a virtualenv under .venv-apps/, built once per
content (the Python, the app's requirement files, the servers and their versions) by
envbuild.py and reused by later runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from flaskbench import PROJECT_ROOT
from flaskbench.config.app import snapshot
from flaskbench.execute.environments import ENVBUILD, RESULT_NAME, Built, Environment, built_from
from flaskbench.servers.registry import SERVERS

VENVS = PROJECT_ROOT / ".venv-apps"
# Prints {distribution: version} of the environment it runs in, as meta.json records it.
PACKAGES_SCRIPT = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}, sort_keys=True))"
)


class AppEnvError(Exception):
    """The app's environment cannot be built; the message says why and what to do."""


def environment_python(environment: Environment, say: Callable[[str], None]) -> tuple[str, Built]:
    """The Python that serves `environment` locally, built first if need be, and what is in it."""
    if environment.pinned and environment.app.builtin:
        packages = installed_packages(sys.executable)
        return sys.executable, Built("flaskbench's own", platform.python_version(), packages)
    key = hashlib.sha256(f"{platform.python_version()}\0{environment.key()}".encode())
    venv = VENVS / key.hexdigest()[:16]
    ready = venv / RESULT_NAME
    VENVS.mkdir(exist_ok=True)
    with (VENVS / f"{venv.name}.lock").open("w") as lock:
        # Two runs building the same environment at once would break each other's.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.is_file():
            say(f"installing {environment.describe()} into {venv} (once; later runs reuse it)")
            _build(environment, venv, venv.with_suffix(".log"))
    return str(venv / "bin" / "python"), built_from(json.loads(ready.read_text()), str(venv))


def _build(environment: Environment, venv: Path, log: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    log.unlink(missing_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], log, Path.cwd())
    app = environment.app
    pins = {s.pins: str(s.pins) for s in SERVERS.values() if s.pins is not None}
    with tempfile.TemporaryDirectory(prefix="flaskbench-install-") as directory:
        # From a copy: pip builds a project in its own tree, and a version a target asks for
        # leaves the app's own pin of it out of the copy's requirements, never the user's.
        tree = Path(directory) / "app"
        if app.builtin:
            tree.mkdir()
            args = ["-r", str(app.requirements)] if app.requirements else []
        else:
            snapshot(app.path, tree)
            args = ["-r", str(app.requirements.relative_to(app.path))] if app.requirements else []
            args = args or (["."] if app.project else [])
        spec = Path(directory) / "spec.json"
        spec.write_text(json.dumps(environment.spec(args, pins, str(venv / RESULT_NAME))))
        _run([str(venv / "bin" / "python"), str(ENVBUILD), str(spec)], log, tree)


def _run(argv: list[str], log: Path, cwd: Path) -> None:
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        done = subprocess.run(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        lines = log.read_text(errors="replace").splitlines()
        errors = [line.strip() for line in lines if line.startswith("ERROR:")]
        cause = errors[-1] if errors else (lines[-1].strip() if lines else "no output")
        raise AppEnvError(
            f"app.requirements: installing the app's requirements failed: {cause}; "
            f"full log in {log}"
        )


def installed_packages(python: str) -> dict[str, str]:
    """{distribution: version} of the environment `python` runs in."""
    done = subprocess.run(
        [python, "-c", PACKAGES_SCRIPT], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return {}
    packages: dict[str, str] = json.loads(done.stdout)
    return packages
