"""Which containers count as a crashed run's leftovers, and removing only those."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from benchrun import live_run_stand_in

from flaskbench.execute.leftovers import (
    CONTROLLER_LABEL,
    OWNER_LABEL,
    OWNER_STARTED_LABEL,
    PORTS_LABEL,
    RUN_LABEL,
    Leftover,
    controller_id,
    find_leftovers,
    flaskbench_alive,
    holders,
    owner_alive,
    remove_leftovers,
)

HERE = "box/1234abcd"


@dataclass
class FakeContainer:
    name: str
    labels: dict[str, str]
    status: str = "running"
    id: str = field(default="")

    def __post_init__(self) -> None:
        self.id = self.id or f"id-{self.name}"


class FakeContainers:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self._containers = containers

    def list(self, all: bool, filters: dict[str, str], ignore_removed: bool) -> list[FakeContainer]:
        # A container removed while the engine lists them must not fail the listing.
        assert ignore_removed
        return [c for c in self._containers if filters["label"] in c.labels]


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = FakeContainers(containers)


def labels(owner: str, started: str = "", controller: str | None = None) -> dict[str, str]:
    found = {OWNER_LABEL: owner, RUN_LABEL: "run-1", PORTS_LABEL: "18080"}
    if started:
        found[OWNER_STARTED_LABEL] = started
    if controller is not None:
        found[CONTROLLER_LABEL] = controller
    return found


def alive_pids(*pids: int) -> object:
    return lambda pid, started: pid in pids


def test_a_dead_owner_on_this_controller_is_a_leftover() -> None:
    assert not owner_alive(labels("42", controller=HERE), HERE, alive_pids())
    assert owner_alive(labels("42", controller=HERE), HERE, alive_pids(42))


def test_another_controllers_containers_are_never_judged() -> None:
    assert owner_alive(labels("42", controller="other/5678"), HERE, alive_pids())


def test_containers_without_a_controller_label_belong_to_this_machine() -> None:
    assert not owner_alive(labels("42"), HERE, alive_pids())


def test_a_garbled_owner_is_left_alone() -> None:
    assert owner_alive(labels("nobody"), HERE, alive_pids())


def test_a_reused_pid_does_not_keep_a_dead_runs_containers() -> None:
    sleeper = live_run_stand_in(60)
    try:
        import psutil

        started = f"{psutil.Process(sleeper.pid).create_time():.2f}"
        assert flaskbench_alive(sleeper.pid, started)
        assert flaskbench_alive(sleeper.pid, "")
        # Same pid, another process start: the owner that started the container is gone.
        assert not flaskbench_alive(sleeper.pid, "12.34")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not flaskbench_alive(sleeper.pid, started)


def test_a_process_that_is_not_flaskbench_is_not_an_owner() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert not flaskbench_alive(sleeper.pid, "")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_find_leftovers_keeps_live_runs_and_foreign_containers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here = controller_id()
    client = FakeClient(
        [
            FakeContainer("dead-target", labels("41", controller=here)),
            FakeContainer("dead-worker", labels("41", controller=here), status="exited"),
            FakeContainer("live", labels("42", controller=here)),
            FakeContainer("elsewhere", labels("41", controller="far/away")),
            FakeContainer("unlabelled", {"other": "app"}),
        ]
    )
    found = find_leftovers(client, alive=alive_pids(42))  # type: ignore[arg-type]
    assert [(f.container, f.running, f.ports) for f in found] == [
        ("dead-target", True, (18080,)),
        ("dead-worker", False, (18080,)),
    ]


class RemovingContainers(FakeContainers):
    """An engine on which something else is removing every container already."""

    def __init__(self, containers: list[FakeContainer], answer: Exception) -> None:
        super().__init__(containers)
        self.answer = answer

    def get(self, container_id: str) -> RemovingContainers:
        return self

    def remove(self, force: bool, v: bool) -> None:
        raise self.answer


def conflict(explanation: str) -> Exception:
    import docker.errors
    import requests

    response = requests.Response()
    response.status_code = 409
    return docker.errors.APIError("409 Client Error", response, explanation)


def test_a_leftover_another_run_is_removing_counts_as_removed() -> None:
    """Runs starting at once each remove what a crashed run left: the engine refuses all but
    one removal of a container."""
    here = controller_id()
    dead = [FakeContainer("dead-target", labels("41", controller=here))]
    client = FakeClient(dead)
    busy = conflict("removal of container abc is already in progress")
    client.containers = RemovingContainers(dead, busy)
    removed = remove_leftovers(client, alive=alive_pids())  # type: ignore[arg-type]
    assert [leftover.container for leftover in removed] == ["dead-target"]
    client.containers = RemovingContainers(dead, conflict("container is paused"))
    with pytest.raises(Exception, match="paused"):
        remove_leftovers(client, alive=alive_pids())  # type: ignore[arg-type]


def test_only_running_leftovers_hold_ports() -> None:
    running = Leftover("a", "1", "run-1", "c", True, (18080,))
    stopped = Leftover("b", "2", "run-1", "c", False, (18080,))
    other_port = Leftover("c", "3", "run-1", "c", True, (15557,))
    assert holders([running, stopped, other_port], 18080) == [running]
    assert "of crashed run run-1 (running)" in running.describe()


SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build-base-image.sh"


def mirror(apt: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--print-mirror"],
        env={"PATH": "/usr/bin:/bin", "APT_ETC": str(apt), **env},
        capture_output=True,
        text=True,
    )


def test_base_image_mirror_comes_from_the_hosts_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    done = mirror(tmp_path)
    assert (done.returncode, done.stdout) == (0, "http://mirror.example/debian\n")


def test_base_image_mirror_from_a_one_line_sources_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n"
    )
    assert mirror(tmp_path).stdout == "http://old.example/debian\n"


def test_debian_mirror_overrides_the_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://old.example/debian bookworm main\n")
    assert mirror(tmp_path, DEBIAN_MIRROR="http://mine.example/d").stdout == (
        "http://mine.example/d\n"
    )


def test_no_mirror_anywhere_asks_for_debian_mirror(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://old.example/debian bullseye main\n")
    done = mirror(tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "build-base-image: no Debian bookworm mirror in this host's apt sources; "
        "set DEBIAN_MIRROR=<mirror URL> and run it again"
    ]
    assert "http" not in SCRIPT.read_text().split("set -euo pipefail", 1)[1]
