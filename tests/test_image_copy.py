"""Images reach other hosts as the very bytes built here: copied with the engines' save and
load, and checked by image ID."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker.errors
import pytest

from flaskbench.execute.images import SOURCE_LABEL, ImageError, copy_image

TAG = "flaskbench-target:abc123"


@dataclass
class Image:
    id: str
    tags: list[str]
    labels: dict[str, str] = field(default_factory=dict)


class Images:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> Image:
        for image in self.engine.store.values():
            if name in image.tags or name == image.id:
                return image
        raise docker.errors.ImageNotFound(name)

    def list(self, filters: dict[str, str]) -> list[Image]:
        key, _, value = filters["label"].partition("=")
        return [i for i in self.engine.store.values() if i.labels.get(key) == value]

    def remove(self, image_id: str, force: bool = False) -> None:
        del self.engine.store[image_id]


class Api:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_image(self, name: str) -> Iterator[bytes]:
        self.engine.saved.append(name)
        image = Images(self.engine).get(name)
        yield f"{image.id}|{','.join(image.tags)}".encode()

    def load_image(self, data: Iterator[bytes], quiet: bool) -> Iterator[dict[str, Any]]:
        image_id, tags = b"".join(data).decode().split("|")
        if self.engine.broken:
            yield {"error": "no space left on device"}
            return
        # A host whose store hands back something else than it was given.
        loaded = self.engine.tamper or image_id
        for other in self.engine.store.values():
            other.tags = [t for t in other.tags if t not in tags.split(",")]
        self.engine.store[loaded] = Image(loaded, tags.split(","), {SOURCE_LABEL: "target:"})
        yield {"stream": f"Loaded image: {tags}"}


class Engine:
    def __init__(self, *images: Image, tamper: str = "", broken: bool = False) -> None:
        self.store = {image.id: image for image in images}
        self.saved: list[str] = []
        self.tamper = tamper
        self.broken = broken
        self.images = Images(self)
        self.api = Api(self)


BUILT = Image("sha256:built", [TAG], {SOURCE_LABEL: "target:"})


def test_a_host_without_the_image_gets_it_and_the_id_is_checked() -> None:
    said: list[str] = []
    older = Image("sha256:older", ["flaskbench-target:old"], {SOURCE_LABEL: "target:"})
    host = Engine(older)
    assert copy_image(Engine(BUILT), host, TAG, "vm-a", said.append) == "sha256:built"
    assert host.images.get(TAG).id == "sha256:built"
    assert said == [f"copying {TAG} to vm-a"]
    # The build it replaces is dead weight there too.
    assert "sha256:older" not in host.store


def test_a_host_with_the_very_same_image_is_left_alone() -> None:
    source = Engine(BUILT)
    host = Engine(Image("sha256:built", [TAG]))
    assert copy_image(source, host, TAG, "vm-a", print) == "sha256:built"
    assert source.saved == []


def test_a_same_named_image_with_other_bytes_is_replaced() -> None:
    source = Engine(BUILT)
    host = Engine(Image("sha256:built-there", [TAG]))
    assert copy_image(source, host, TAG, "vm-a", print) == "sha256:built"
    assert source.saved == [TAG]
    assert host.images.get(TAG).id == "sha256:built"


def test_an_image_that_arrives_with_another_id_fails() -> None:
    host = Engine(tamper="sha256:something-else")
    with pytest.raises(ImageError) as caught:
        copy_image(Engine(BUILT), host, TAG, "vm-a", print)
    assert str(caught.value) == (
        f"{TAG} on vm-a has image ID sha256:something-else after loading, not sha256:built: "
        "not the bytes built here; remove it there (docker rmi) and run again"
    )


def test_a_failed_load_names_the_host_and_the_cause() -> None:
    with pytest.raises(ImageError, match=f"loading {TAG} into vm-b failed: no space left"):
        copy_image(Engine(BUILT), Engine(broken=True), TAG, "vm-b", print)
