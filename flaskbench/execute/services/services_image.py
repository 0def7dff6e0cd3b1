"""The docker runner's services image: compose/services.Dockerfile on the base image the run's
other images are built from, with the Debian packages of the config's services. Tagged by a hash
of everything that goes into it, so it is built once per machine and rebuilt exactly when
something changed."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flaskbench import PROJECT_ROOT
from flaskbench.config.app import tree_digest
from flaskbench.config.services import ServiceSpec
from flaskbench.execute.images import _build, _remove_older
from flaskbench.execute.services.kinds import KINDS
from flaskbench.execute.services.postgres import DEBIAN_VERSION
from flaskbench.execute.services.service import SAMPLER, SCRIPT

DOCKERFILE = PROJECT_ROOT / "compose" / "services.Dockerfile"
NAME = "flaskbench-services"
# Every services image holds these, so that configs of the usual kinds share one image.
ALWAYS = ("redis-server", f"postgresql-{DEBIAN_VERSION}")


def packages(specs: tuple[ServiceSpec, ...]) -> list[str]:
    wanted = {p for spec in specs for p in KINDS[spec.kind].packages(spec.wanted_version)}
    return sorted(wanted | set(ALWAYS))


def ensure_services_image(
    client: Any, base: str, specs: tuple[ServiceSpec, ...], say: Callable[[str], None], log: Path
) -> str:
    """The tag of the services image for `specs` on `base`, built unless an identical one
    exists. Raises ImageError naming what failed."""
    build_args = {"BASE_IMAGE": base, "PACKAGES": " ".join(packages(specs))}
    with tempfile.TemporaryDirectory(prefix="flaskbench-services-") as directory:
        context = Path(directory)
        shutil.copy(DOCKERFILE, context / "Dockerfile")
        shutil.copy(SCRIPT, context / "fb-service.sh")
        shutil.copy(SAMPLER, context / "sampler.py")
        digest = hashlib.sha256(client.images.get(base).id.encode())
        digest.update(repr(sorted(build_args.items())).encode())
        digest.update(tree_digest(context).encode())
        tag = f"{NAME}:{digest.hexdigest()[:12]}"
        if client.images.list(name=tag):
            return tag
        say(f"building {tag} ({', '.join(packages(specs))}; once, later runs reuse it)")
        _build(client, tag, context, build_args, NAME, log)
    _remove_older(client, NAME, tag)
    return tag
