"""What a published result needs to be reproduced: versions, machine, CPU split, config, git."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flaskbench
from flaskbench import PROJECT_ROOT
from flaskbench.config.load import Config
from flaskbench.config.units import format_cpus
from flaskbench.servers.registry import recorded_packages

# Beside the servers' own: what serves the app, and what generates the load.
PACKAGES = tuple(dict.fromkeys(("flask", "werkzeug", *recorded_packages(), "locust", "psutil")))
SYS = Path("/sys")


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _sys_text(path: Path) -> str | None:
    """A sysfs value, or None where the host does not show it (containers, some VMs)."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def machine_model(sys_root: Path = SYS) -> dict[str, str | None]:
    """What the firmware says the machine is: on a cloud VM, the instance type's family."""
    dmi = sys_root / "class" / "dmi" / "id"
    return {"vendor": _sys_text(dmi / "sys_vendor"), "product": _sys_text(dmi / "product_name")}


def cpu_frequency(cpus: Sequence[int], sys_root: Path = SYS) -> dict[str, str | None]:
    """The frequency driver and governor of the given CPUs (distinct values joined), if visible."""
    found: dict[str, dict[str, None]] = {"driver": {}, "governor": {}}
    for cpu in cpus:
        base = sys_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        for key, name in (("driver", "scaling_driver"), ("governor", "scaling_governor")):
            if (value := _sys_text(base / name)) is not None:
                found[key][value] = None
    return {key: ", ".join(values) or None for key, values in found.items()}


def machine(sys_root: Path = SYS) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": format_cpus(cpus),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "model": machine_model(sys_root),
        "cpufreq": cpu_frequency(cpus, sys_root),
    }


def run_meta(config: Config, run_id: str, runner: str, runner_reason: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "tool": {"name": "flaskbench", "version": flaskbench.__version__},
        "git": git_revision(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "machine": machine(),
        "cpus": {
            "target": format_cpus(config.cpus.target),
            "load": format_cpus(config.cpus.load),
        },
        "locust_workers": config.locust_workers,
        "runner": {"name": runner, "reason": runner_reason},
        "config_file": str(config.path),
        "config": config.as_run,
    }
