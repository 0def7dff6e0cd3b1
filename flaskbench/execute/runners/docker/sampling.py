"""Resources of a cell's containers on every host: `docker stats` streams, and the PSS of the
server's processes when the target runs on this machine's engine."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from flaskbench.execute.runners.runner import ResourceSampler, is_server_process


class DockerSampler(ResourceSampler):
    """Streams `docker stats` of each container of every stack, on every host (about once a
    second), stamped with the master's clock (`shift_s` from ours)."""

    def __init__(
        self,
        out: Path,
        containers: dict[str, tuple[str, Any, str]],
        shift_s: float,
        target_here: bool,
    ) -> None:
        super().__init__(out)
        self._containers = containers
        self._shift_s = shift_s
        # Only a target on this machine's engine has pids that this machine's /proc describes.
        self._target_here = target_here
        self._streams: list[threading.Thread] = []

    def start(self) -> ResourceSampler:
        for name, (side, container, host) in self._containers.items():
            thread = threading.Thread(
                target=self._stream, args=(name, side, container, host), daemon=True
            )
            thread.start()
            self._streams.append(thread)
        return self

    def sample(self) -> None:
        """Streams push CPU and memory; the server's own processes are polled for their PSS
        (their host pids, readable as root, else left out) when the target runs here."""
        target = self._containers.get("target")
        if target is None or not self._target_here:
            return
        try:
            table = target[1].top(ps_args="-o pid,args")
        except Exception:  # the container went away meanwhile
            return
        pids = [int(row[0]) for row in table.get("Processes") or () if is_server_process(row[1])]
        self.record_server_memory(time.time() + self._shift_s, pids)

    def _stream(self, name: str, side: str, container: Any, host: str) -> None:
        try:
            for stats in container.stats(stream=True, decode=True):
                if self._stopped.is_set():
                    return
                if (usage := container_usage(stats)) is not None:
                    self.record(time.time() + self._shift_s, side, name, *usage, host=host)
        except Exception:  # the container (or its host) went away: the stream simply ends
            return

    def stop(self) -> None:
        self._stopped.set()
        super().stop()


def container_usage(stats: dict[str, Any]) -> tuple[float, float] | None:
    """(CPU as % of one core since the previous sample, memory in MiB without page cache)."""
    try:
        cpu = stats["cpu_stats"]
        pre = stats["precpu_stats"]
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
        online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [1])
        memory = stats["memory_stats"]
        cache = memory.get("stats", {}).get(
            "cache", memory.get("stats", {}).get("inactive_file", 0)
        )
        rss = (memory["usage"] - cache) / 1024 / 1024
    except (KeyError, TypeError):
        return None
    if system_delta <= 0:
        return None
    return 100.0 * cpu_delta / system_delta * online, rss
