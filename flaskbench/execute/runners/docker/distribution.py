"""The images on every host of a run: built once and copied with the engines' save and load
(checked by image ID, so every host runs the very same bytes), or built on each host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flaskbench.config.hosts import DEFAULT_ENGINE, HostFacts
from flaskbench.config.load import Config
from flaskbench.execute.engines import (
    TRANSFER_TIMEOUT_S,
    Engine,
    HostLost,
    client_for,
    connect,
    daemon_identity,
)
from flaskbench.execute.environments import Environment
from flaskbench.execute.images import Images, copy_image, ensure_images
from flaskbench.plan.placement import Placement
from flaskbench.proxies.proxy_registry import debian_packages
from flaskbench.results.contract import IMAGE_BUILD_LOG, ImagesRecord

# The images a host runs, by side.
_BOTH = frozenset({"target", "load"})


class ImageDistribution:
    def __init__(
        self,
        config: Config,
        placement: Placement,
        engines: dict[str, Engine],
        facts: dict[str, HostFacts],
        say: Callable[[str], None],
        environments: tuple[Environment, ...],
    ) -> None:
        self.config = config
        self.environments = environments
        self.placement = placement
        # Shared with the runner: the build engine, when it is none of the run's, joins it.
        self.engines = engines
        self.facts = facts
        self.say = say
        self.images: dict[str, Images] = {}

    def distribute(self) -> tuple[dict[str, Images], ImagesRecord]:
        """Every image on every host that runs it: built once and copied (hosts.images =
        "copy", and every single-host run), or built on each host. Returns the images per host
        and, for meta.json, how they got there, with their IDs."""
        placement = self.placement
        mode = self.config.hosts.images if self.config.hosts else "copy"
        needs = {spec: _image_roles(placement.roles(spec)) for spec in placement.engines}
        if mode == "build":
            built_on = "each host"
            ids = {spec: self._build(spec, roles) for spec, roles in needs.items()}
        else:
            source = self._build_engine()
            built_on = self.engines[source].name
            ids = self._build_once_and_copy(source, needs)
        by_tag: dict[str, set[str]] = {}
        for tags in ids.values():
            for tag, image_id in tags.items():
                by_tag.setdefault(tag, set()).add(image_id)
        return self.images, {
            "mode": mode,
            "built_on": built_on,
            "hosts": {self.engines[spec].name: tags for spec, tags in ids.items()},
            "same_image_ids": all(len(found) == 1 for found in by_tag.values()),
        }

    def _build(self, spec: str, roles: frozenset[str] = _BOTH) -> dict[str, str]:
        """Build (or find) on one engine the images `roles` need: {tag: image ID}."""
        config = self.config
        engine = self.engines[spec]
        self.images[spec] = images = ensure_images(
            client_for(spec, TRANSFER_TIMEOUT_S),
            config.base_image,
            self.environments,
            [w.locustfile for w in config.workloads],
            self.say,
            Path(config.results_dir) / IMAGE_BUILD_LOG,
            (config.results_dir,),
            roles,
            remote_host="" if spec == DEFAULT_ENGINE else engine.label,
            system_packages=debian_packages([t.proxy for t in config.targets]),
        )
        return {tag: str(engine.client.images.get(tag).id) for tag in _tags(images, roles)}

    def _build_once_and_copy(
        self, source: str, needs: dict[str, frozenset[str]]
    ) -> dict[str, dict[str, str]]:
        built = self._build(source)
        origin = client_for(source, TRANSFER_TIMEOUT_S)
        ids = {}
        for spec, roles in needs.items():
            self.images[spec] = self.images[source]
            tags = _tags(self.images[spec], roles)
            if self._daemon_id(spec) == self._daemon_id(source):
                ids[spec] = {tag: built[tag] for tag in tags}
                continue
            destination = client_for(spec, TRANSFER_TIMEOUT_S)
            label = self.engines[spec].label
            ids[spec] = {tag: copy_image(origin, destination, tag, label, self.say) for tag in tags}
        return ids

    def _build_engine(self) -> str:
        """Where images are built before they are copied: this machine's engine if it has
        one, else the target's host."""
        if DEFAULT_ENGINE in self.engines:
            return DEFAULT_ENGINE
        try:
            self.engines[DEFAULT_ENGINE] = connect(DEFAULT_ENGINE, "image builds")
        except HostLost:
            return self.placement.target
        return DEFAULT_ENGINE

    def _daemon_id(self, spec: str) -> str:
        if spec in self.facts:
            return self.facts[spec].daemon_id
        return daemon_identity(self.engines[spec].client.info())


def any_image(images: Images, roles: tuple[str, ...]) -> str:
    """An image a host with these roles holds, for one-off commands there."""
    return _tags(images, _image_roles(roles))[0]


def _image_roles(roles: tuple[str, ...]) -> frozenset[str]:
    """The images a host with these roles runs: the target's, the load's, or both."""
    load = "master" in roles or "workers" in roles
    return frozenset(side for side, runs in (("target", "target" in roles), ("load", load)) if runs)


def _tags(images: Images, roles: frozenset[str]) -> list[str]:
    tags = list(images.targets) if "target" in roles else []
    return tags + (list(images.loadgen.values()) if "load" in roles else [])
