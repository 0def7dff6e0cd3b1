"""A container removed by someone else while flaskbench looks at it: between listing it and
inspecting it (the Docker SDK lists, then inspects each container in turn), or between two
looks. It is gone, not an error: the cell it belonged to fails with one line naming it."""

from __future__ import annotations

import contextlib
import io
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from benchrun import require_docker
from leftovers_guard import guard_labels

from flaskbench.execute.engines import Engine, docker_client
from flaskbench.execute.leftovers import OWNER_LABEL, find_leftovers
from flaskbench.execute.runners.docker.compose import ComposeStack
from flaskbench.execute.runners.runner import REMOVED

pytestmark = pytest.mark.docker


@pytest.fixture
def client() -> Any:
    require_docker()
    return docker_client()


@pytest.fixture
def image(client: Any) -> str:
    """An image with nothing in it: containers made from it are never started."""
    built, _ = client.images.build(
        fileobj=io.BytesIO(b'FROM scratch\nCMD ["/none"]\n'), tag="fbt-empty:1", rm=True
    )
    return str(built.id)


@pytest.fixture
def project() -> str:
    return f"fb-vanish-{secrets.token_hex(3)}-target"


@pytest.fixture
def made(client: Any) -> Iterator[list[Any]]:
    containers: list[Any] = []
    yield containers
    for container in containers:
        # Removed by the test already, as intended, or here.
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def remove_on_inspect(
    client: Any, monkeypatch: pytest.MonkeyPatch, victim: Any, call: int
) -> Callable[[], int]:
    """From the `call`th inspection of `victim` on, it is removed just before it is inspected:
    someone's `docker rm` landing between two requests of ours. Nothing else is touched."""
    original = client.api.inspect_container
    calls = 0

    def inspect(container: str) -> Any:
        nonlocal calls
        if container == victim.id:
            calls += 1
            if calls >= call:
                try:
                    client.api.remove_container(container, force=True)
                except Exception as exc:
                    if "No such container" not in str(exc):
                        raise
        return original(container)

    monkeypatch.setattr(client.api, "inspect_container", inspect)
    return lambda: calls


def target_container(client: Any, image: str, project: str, made: list[Any]) -> str:
    name = f"{project}-target-1"
    labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": "target",
        "com.docker.compose.container-number": "1",
        **guard_labels(),
    }
    made.append(client.containers.create(image, name=name, labels=labels))
    return name


def stack(client: Any, project: str, tmp_path: Path) -> ComposeStack:
    return ComposeStack(
        ["docker", "compose"],
        Engine("", client),
        project,
        (),
        {},
        "target",
        tmp_path,
        lambda service, number: "target",
    )


def test_a_container_removed_between_listing_and_inspecting_is_removed_not_an_error(
    client: Any,
    image: str,
    project: str,
    made: list[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = target_container(client, image, project, made)
    watched = stack(client, project, tmp_path)
    assert watched.returncode() is None
    calls = remove_on_inspect(client, monkeypatch, made[0], call=1)
    assert watched.returncode() == REMOVED
    assert calls() >= 1
    assert watched.exit_description() == (
        f"container {name} was removed while the cell ran (not by flaskbench)"
    )


def test_a_container_removed_between_two_looks_is_removed_not_an_error(
    client: Any,
    image: str,
    project: str,
    made: list[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target_container(client, image, project, made)
    watched = stack(client, project, tmp_path)
    # Listed (and inspected by the listing) first, then removed before it is looked at again.
    remove_on_inspect(client, monkeypatch, made[0], call=2)
    assert watched.returncode() == REMOVED
    # Its logs and files cannot come home; the teardown goes on regardless.
    watched._bring_home()
    assert list(tmp_path.iterdir()) == []


def test_a_leftover_removed_while_leftovers_are_listed_is_left_out(
    client: Any, image: str, made: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {OWNER_LABEL: "4194305", "flaskbench.run": "crashed", **guard_labels()}
    made.append(client.containers.create(image, labels=labels))
    remove_on_inspect(client, monkeypatch, made[0], call=1)
    assert [
        leftover for leftover in find_leftovers(client) if leftover.container_id == made[0].id
    ] == []
