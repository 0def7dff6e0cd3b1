"""Headless Chromium, for the tests that look at pages the way a reader's browser shows them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
# Screenshots the tests take, to look at after a run (CI keeps them as artifacts).
ARTIFACTS = Path(os.environ.get("FLASKBENCH_ARTIFACTS", PROJECT / "build" / "test-artifacts"))
_NAMES = ("chromium", "chromium-browser", "google-chrome")


def require_browser() -> str:
    """The browser's path; skip without one, unless CI demands the full suite (then fail)."""
    for name in _NAMES:
        if found := shutil.which(name):
            return found
    if os.environ.get("FLASKBENCH_REQUIRE_DOCKER") == "1":
        pytest.fail("FLASKBENCH_REQUIRE_DOCKER=1 but no headless browser; apt-get install chromium")
    pytest.skip("no headless browser (apt-get install chromium)")


def _chromium(*args: str, width: int, height: int) -> subprocess.CompletedProcess[str]:
    binary = require_browser()
    with tempfile.TemporaryDirectory(prefix="flaskbench-browser-") as profile:
        done = subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, f"chromium failed:\n{done.stderr[-2000:]}"
    return done


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 900) -> Path:
    """The first screen of a page as a reader at that window size sees it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium(f"--screenshot={out}", page.resolve().as_uri(), width=width, height=height)
    assert out.read_bytes().startswith(b"\x89PNG")
    return out


def dump_dom(page: Path, width: int = 1280, height: int = 900) -> str:
    """The page's DOM after the browser loaded it (scripts of the page run first)."""
    return _chromium("--dump-dom", page.resolve().as_uri(), width=width, height=height).stdout
