"""Build the target and Locust images, from a base image that this host can actually get.

Images are tagged by a hash of everything that goes into them (files, base image, extra CA),
so they are rebuilt exactly when something changed. Builds run with host networking and trust
an extra CA bundle (FLASKBENCH_EXTRA_CA, else PIP_CERT) for hosts behind TLS-inspecting proxies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flaskbench import PROJECT_ROOT

LOCAL_BASE = "flaskbench-base:bookworm"
BASE_SCRIPT = PROJECT_ROOT / "scripts" / "build-base-image.sh"
DOCKERFILE = PROJECT_ROOT / "compose" / "app.Dockerfile"
# Image name -> (the project folder with its code and requirements.txt, where it goes in the image)
SOURCES = {
    "flaskbench-target": ("targets", "/app"),
    "flaskbench-locust": ("locustfiles", "/locust"),
}
PASSED_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")


class ImageError(Exception):
    """An image cannot be had; the message says what to do."""


@dataclass(frozen=True)
class Images:
    base: str
    target: str
    loadgen: str


def extra_ca() -> Path | None:
    for variable in ("FLASKBENCH_EXTRA_CA", "PIP_CERT"):
        if value := os.environ.get(variable):
            path = Path(value)
            if not path.is_file():
                raise ImageError(f"{variable}={value} names no file; fix or unset it")
            return path
    return None


def _context_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.suffix == ".py" or p.name == "requirements.txt")
    )


def _tag(name: str, files: list[Path], base_id: str, ca: bytes, app_dir: str) -> str:
    digest = hashlib.sha256(base_id.encode() + ca + app_dir.encode() + DOCKERFILE.read_bytes())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{name}:{digest.hexdigest()[:12]}"


def resolve_base(client: Any, wanted: str, say: Callable[[str], None]) -> str:
    """The configured base if present or pullable, else the local Debian base, built if need be."""
    import docker.errors

    try:
        client.images.get(wanted)
        return wanted
    except docker.errors.ImageNotFound:
        pass
    try:
        say(f"pulling base image {wanted}")
        client.images.pull(wanted)
        return wanted
    except docker.errors.APIError as exc:
        reason = str(exc.explanation or exc).splitlines()[0][:160]
    try:
        client.images.get(LOCAL_BASE)
        say(f"cannot pull {wanted} ({reason}); using the local base image {LOCAL_BASE}")
        return LOCAL_BASE
    except docker.errors.ImageNotFound:
        pass
    if os.geteuid() != 0:
        raise ImageError(
            f"cannot pull {wanted} ({reason}); build a local base with `sudo make base-image`"
        )
    say(f"cannot pull {wanted} ({reason}); building {LOCAL_BASE} from Debian packages (~1 min)")
    build_local_base(LOCAL_BASE)
    return LOCAL_BASE


def build_local_base(image: str) -> None:
    done = subprocess.run([str(BASE_SCRIPT), image], capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ImageError(f"building {image} failed: {tail[0]}; run `make base-image` to see why")


def ensure_images(client: Any, base_image: str, say: Callable[[str], None], log: Path) -> Images:
    base = resolve_base(client, base_image, say)
    base_id = client.images.get(base).id
    ca_path = extra_ca()
    ca = ca_path.read_bytes() if ca_path else b""
    built = {}
    for name, (folder, app_dir) in SOURCES.items():
        files = _context_files(PROJECT_ROOT / folder)
        tag = _tag(name, files, base_id, ca, app_dir)
        built[name] = tag
        if client.images.list(name=tag):
            continue
        say(f"building {tag} (once; later runs reuse it)")
        _build(client, tag, files, {"BASE_IMAGE": base, "APP_DIR": app_dir}, ca, log)
        _remove_older(client, name, tag)
    return Images(base, built["flaskbench-target"], built["flaskbench-locust"])


def _remove_older(client: Any, name: str, current: str) -> None:
    """Earlier builds of the same image are dead weight once a new one exists."""
    import docker.errors

    for image in client.images.list(name=name, filters={"label": "flaskbench=image"}):
        if current not in image.tags:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=False)


def _build(
    client: Any, tag: str, files: list[Path], build_args: dict[str, str], ca: bytes, log: Path
) -> None:
    import docker.errors

    build_args = build_args | {k: os.environ[k] for k in PASSED_BUILD_ARGS if os.environ.get(k)}
    with tempfile.TemporaryDirectory(prefix="flaskbench-build-") as context:
        for path in files:
            shutil.copy(path, context)
        shutil.copy(DOCKERFILE, Path(context, "Dockerfile"))
        Path(context, "extra-ca.pem").write_bytes(ca)
        lines: list[str] = []
        try:
            for chunk in client.api.build(
                path=context,
                tag=tag,
                buildargs=build_args,
                network_mode="host",
                rm=True,
                forcerm=True,
                decode=True,
                labels={"flaskbench": "image"},
            ):
                if text := chunk.get("stream"):
                    lines.append(text)
                if error := chunk.get("error"):
                    lines.append(error)
                    raise ImageError(f"building {tag} failed: {error.strip()}; full log in {log}")
        except docker.errors.APIError as exc:
            raise ImageError(f"building {tag} failed: {exc}; full log in {log}") from None
        finally:
            with log.open("a") as handle:
                handle.write("".join(lines))
