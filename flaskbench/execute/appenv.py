"""The local runner's Python for an app: flaskbench's own for the built-in app; for a user's app a
virtualenv with the servers' pins and the app's own requirements (or the project itself),
built once per set of requirements and reused by later runs.

The servers keep flaskbench's pins: the app's requirements are installed under them as
constraints, so a conflict the config check could not see (a dependency of a dependency) makes
pip fail, and that failure is reported in one line with pip's own reason.
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
from flaskbench.config.app import App, snapshot
from flaskbench.servers.registry import pinned_requirements

VENVS = PROJECT_ROOT / ".venv-apps"
# Prints {distribution: version} of the environment it runs in, as meta.json records it.
PACKAGES_SCRIPT = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}, sort_keys=True))"
)


class AppEnvError(Exception):
    """The app's environment cannot be built; the message says why and what to do."""


def app_python(app: App, say: Callable[[str], None]) -> str:
    """The Python that serves `app` locally, its virtualenv built first if need be."""
    if app.builtin:
        return sys.executable
    key = hashlib.sha256(platform.python_version().encode())
    for path in app.install_files:
        key.update(path.name.encode() + b"\0" + path.read_bytes())
    venv = VENVS / key.hexdigest()[:16]
    python = venv / "bin" / "python"
    ready = venv / ".installed"
    VENVS.mkdir(exist_ok=True)
    with (VENVS / f"{venv.name}.lock").open("w") as lock:
        # Two runs building the same environment at once would break each other's.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.is_file():
            say(f"installing the app's requirements into {venv} (once; later runs reuse it)")
            _build(app, venv, venv.with_suffix(".log"))
            ready.touch()
    return str(python)


def _build(app: App, venv: Path, log: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    _run([sys.executable, "-m", "venv", str(venv)], log, Path.cwd())
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    _run([*pip, *_each("-r", pinned_requirements())], log, Path.cwd())
    if app.requirements is None and not app.project:
        return
    with tempfile.TemporaryDirectory(prefix="flaskbench-install-") as directory:
        # From a copy: pip builds a project in its own tree, which is the user's.
        tree = Path(directory) / "app"
        snapshot(app.path, tree)
        wanted = ["-r", str(app.requirements.relative_to(app.path))] if app.requirements else ["."]
        _run([*pip, *_each("-c", pinned_requirements()), *wanted], log, tree)


def _each(option: str, files: tuple[Path, ...]) -> list[str]:
    return [part for path in files for part in (option, str(path))]


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
