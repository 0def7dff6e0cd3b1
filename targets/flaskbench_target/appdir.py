"""The directory a target's app runs in: a fresh, writable copy per cell, set up by the app's
own command, so that every cell starts from the same state and nothing the app writes (instance
folders, SQLite files) reaches the user's project or the next cell. Used by launch.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Lines of the setup command's output quoted when it fails.
SETUP_TAIL_LINES = 5


class SetupFailed(Exception):
    """The copy or the setup command failed; the message says how, in one line."""


def fresh_copy(source: Path, destination: Path) -> None:
    """Copy the app (a snapshot flaskbench made of the user's directory) to where it runs."""
    try:
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(source, destination, symlinks=True)
    except OSError as exc:
        raise SetupFailed(f"cannot copy the app from {source} to {destination}: {exc}") from None


def server_env(env: Mapping[str, str], app_dir: Path, spec: str, harness: Path) -> dict[str, str]:
    """The app's directory first on the import path (a src/ layout too), then the directory the
    harness's package is in: only the name flaskbench_target comes from there, so none of the
    harness's modules can shadow one of the app's."""
    paths = [str(app_dir)]
    if (app_dir / "src").is_dir():
        paths.append(str(app_dir / "src"))
    paths.append(str(harness))
    return {**env, "FLASKBENCH_APP": spec, "PYTHONPATH": os.pathsep.join(paths)}


def run_setup(
    command: str, app_dir: Path, env: Mapping[str, str], log: Path, timeout_s: float
) -> None:
    """Run the app's setup command in its directory, output into `log`."""
    with log.open("wb") as handle:
        try:
            done = subprocess.run(
                ["sh", "-c", command],
                cwd=app_dir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise SetupFailed(
                f"`{command}` did not finish within {timeout_s:g} s{_tail(log)}"
            ) from None
        except OSError as exc:
            raise SetupFailed(f"`{command}` could not start: {exc}") from None
    if done.returncode != 0:
        raise SetupFailed(f"`{command}` exited with code {done.returncode}{_tail(log)}")


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if not lines:
        return " (no output)"
    return "; last lines: " + " | ".join(line.strip() for line in lines[-SETUP_TAIL_LINES:])
