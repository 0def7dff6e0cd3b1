"""Separate machines emulated on the test box: each a network namespace with its own address and
its own Docker daemon (../shared/notes/hosts-in-netns.md has the recipe).

The namespaces reach each other over a veth pair in 10.231.0.0/24 and nothing else: no link
joins them to this machine's network, as none joins a laptop to two cloud VMs in a private
network (their addresses lead elsewhere from here; tests never send anything there), and each
daemon sees a private /tmp, so nothing it runs can read this machine's disk through a bind
mount. Everything here is created under names unique to this test session and removed
again, namespaces and daemons by the names and pidfiles this module made, in bounded time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from leftovers_guard import session_tag

from flaskbench.execute.engines import list_containers

SUBNET = "10.231.0"
STATE = Path("/run/flaskbench-test")
DATA = Path("/var/lib/flaskbench-test")
DAEMON_START_S = 60
RELAY = Path(__file__).with_name("relay.py")


@dataclass(frozen=True)
class EmulatedHost:
    name: str
    address: str
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def engine(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "docker.pid"

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.engine, timeout=60)


def missing_tools() -> str | None:
    """Why hosts cannot be emulated here, or None."""
    if os.geteuid() != 0:
        return "emulating hosts needs root (network namespaces, a Docker daemon each)"
    for tool in ("ip", "nsenter", "unshare", "dockerd"):
        if shutil.which(tool) is None:
            return f"emulating hosts needs {tool} (apt-get install iproute2 util-linux docker.io)"
    return None


def require_hosts() -> None:
    """Skip without the means to emulate hosts, unless CI demands them (then fail)."""
    problem = missing_tools()
    if problem is None:
        return
    if os.environ.get("FLASKBENCH_REQUIRE_DOCKER") == "1":
        pytest.fail(f"FLASKBENCH_REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(problem)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def emulated_hosts() -> Iterator[list[EmulatedHost]]:
    """Two hosts, a and b, joined by a veth pair (all the tests need)."""
    tag = session_tag()
    hosts = [
        EmulatedHost(f"{tag}-{letter}", f"{SUBNET}.{index}", STATE / f"{tag}-{letter}")
        for index, letter in enumerate("ab", start=1)
    ]
    created: list[str] = []
    try:
        for host in hosts:
            _run("ip", "netns", "add", host.name)
            created.append(host.name)
        a, b = hosts
        _run("ip", "link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        for host, link in ((a, f"{tag}a"), (b, f"{tag}b")):
            _run("ip", "link", "set", link, "netns", host.name)
            _run("ip", "-n", host.name, "addr", "add", f"{host.address}/24", "dev", link)
            _run("ip", "-n", host.name, "link", "set", "lo", "up")
            _run("ip", "-n", host.name, "link", "set", link, "up")
        for host in hosts:
            _start_daemon(host)
        for host in hosts:
            _wait_for_daemon(host)
        yield hosts
    finally:
        for host in hosts:
            _stop_daemon(host)
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        for directory in (STATE, DATA):
            with contextlib.suppress(OSError):
                directory.rmdir()


def _start_daemon(host: EmulatedHost) -> None:
    host.root.mkdir(parents=True, exist_ok=True)
    data = DATA / host.name
    data.mkdir(parents=True, exist_ok=True)
    # nsenter, not `ip netns exec`, which remounts /sys and hides the cgroup mounts dockerd
    # needs; a private /tmp so that bind mounts of this machine's /tmp show nothing.
    daemon = (
        f"mount -t tmpfs tmpfs /tmp && exec setsid dockerd --data-root {data} "
        f"--exec-root {host.root / 'exec'} -H {host.engine} --pidfile {host.pidfile} "
        "--bridge none --iptables=false --ip6tables=false"
    )
    with (host.root / "dockerd.log").open("wb") as log:
        subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{host.name}",
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                daemon,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_daemon(host: EmulatedHost) -> None:
    deadline = time.monotonic() + DAEMON_START_S
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            host.client().ping()
            return
        time.sleep(0.5)
    log = (host.root / "dockerd.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"dockerd for {host.name} did not answer in {DAEMON_START_S}s:\n{log}")


def _stop_daemon(host: EmulatedHost) -> None:
    """Its containers first (a daemon stopped under them can leave them running), then the
    daemon by its pidfile, then everything it kept on disk."""
    with contextlib.suppress(Exception):
        client = host.client()
        for container in list_containers(client):
            container.remove(force=True, v=True)
    pid = _pid(host.pidfile)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(DATA / host.name, ignore_errors=True)
    shutil.rmtree(host.root, ignore_errors=True)


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").is_dir() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


class Relay:
    """A stand-in for the network path to one engine: a unix socket that forwards to it, which
    a test cuts (the host is lost) and restores (it is back)."""

    def __init__(self, engine_socket: Path, path: Path) -> None:
        self.engine_socket = engine_socket
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def engine(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(RELAY), str(self.path), str(self.engine_socket)],
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def cut(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cut()
