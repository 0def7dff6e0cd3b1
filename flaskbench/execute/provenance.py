"""What a published result needs to be reproduced: versions, machine, CPU split, config, git."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from flaskbench.config.units import format_cpus
from flaskbench.results.contract import CpuFrequency, Machine, MachineModel
from flaskbench.servers.registry import recorded_packages

# Beside the servers' own: what serves the app, and what generates the load.
PACKAGES = tuple(dict.fromkeys(("flask", "werkzeug", *recorded_packages(), "locust", "psutil")))
SYS = Path("/sys")


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


def machine_model(sys_root: Path = SYS) -> MachineModel:
    """What the firmware says the machine is: on a cloud VM, the instance type's family."""
    dmi = sys_root / "class" / "dmi" / "id"
    return {"vendor": _sys_text(dmi / "sys_vendor"), "product": _sys_text(dmi / "product_name")}


def cpu_frequency(cpus: Sequence[int], sys_root: Path = SYS) -> CpuFrequency:
    """The frequency driver and governor of the given CPUs (distinct values joined), if visible."""
    found: dict[str, dict[str, None]] = {"driver": {}, "governor": {}}
    for cpu in cpus:
        base = sys_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        for key, name in (("driver", "scaling_driver"), ("governor", "scaling_governor")):
            if (value := _sys_text(base / name)) is not None:
                found[key][value] = None
    return {
        "driver": ", ".join(found["driver"]) or None,
        "governor": ", ".join(found["governor"]) or None,
    }


def machine(sys_root: Path = SYS) -> Machine:
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
