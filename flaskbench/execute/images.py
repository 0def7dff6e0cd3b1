"""Build the target and Locust images, from a base image that this host can actually get.

A target image is one environment (execute/environments.py): the app's requirements and its
servers, installed by envbuild.py while the image is built (compose/target.Dockerfile), which
leaves what it found in /opt/venv/flaskbench-env.json; the harness (the flaskbench_target
package, at /harness, on the import path after the app); and the app: the built-in one, or a
snapshot of a user's app at /srv/app. A run has one per environment. The Locust image holds
Locust and locustfiles/, plus, for a workload with a Locust file of its own, a snapshot of that
file's directory at /locust/user. Images are tagged
by a hash of everything that goes into them (files, base image, extra CA, build arguments), so
they are rebuilt exactly when something changed. Builds run with host networking and trust an
extra CA bundle (FLASKBENCH_EXTRA_CA, else PIP_CERT) for hosts behind TLS-inspecting proxies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flaskbench import PROJECT_ROOT
from flaskbench.config.app import (
    HARNESS,
    TARGET_PACKAGE,
    requirement_files,
    snapshot,
    tree_digest,
)
from flaskbench.execute.environments import ENVBUILD, RESULT_NAME, Environment
from flaskbench.servers.registry import SERVERS

LOCAL_BASE = "flaskbench-base:bookworm"
BASE_SCRIPT = PROJECT_ROOT / "scripts" / "build-base-image.sh"
DOCKERFILE = PROJECT_ROOT / "compose" / "app.Dockerfile"
TARGET_DOCKERFILE = PROJECT_ROOT / "compose" / "target.Dockerfile"
LOCUST_PINS = PROJECT_ROOT / "locustfiles" / "requirements.txt"
PASSED_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
SOURCE_LABEL = "flaskbench.source"
# Where things are inside the images (see compose/app.Dockerfile).
HARNESS_DIR = "/harness"
LOCUST_DIR = "/locust"
APP_TREE_DIR = "/srv/app"
USER_LOCUST_DIR = "/locust/user"
# Where a target image's build inputs are (see compose/target.Dockerfile), and its result.
BUILD_DIR = "/opt/build"
ENVIRONMENT_RESULT = f"/opt/venv/{RESULT_NAME}"


class ImageError(Exception):
    """An image cannot be had; the message says what to do."""


@dataclass(frozen=True)
class ImageSpec:
    """One image: code files, pinned requirements, and optionally a directory tree."""

    name: str
    code: Path
    code_dir: str
    # The package the code files form under code_dir ("" for files at its top).
    package: str
    requirements: tuple[Path, ...]
    tree: Path | None = None
    tree_dir: str = APP_TREE_DIR
    # The tree's own requirements file (relative to it), or install the tree as a project.
    tree_requirements: str | None = None
    install_tree: bool = False
    # Left out of the tree's snapshot (say, a results folder inside the app's directory).
    leave_out: tuple[Path, ...] = ()
    dockerfile: Path = DOCKERFILE
    # Files for build/ of the context, by name (a target image's environment).
    build_files: tuple[tuple[str, bytes], ...] = ()
    # What else tells this image from others of the same tree (its environment's servers).
    variant: str = ""
    # The files of the tree a target image's installation reads, for reqs/ of the context (None:
    # all of it): with only those copied before the tree, a change to the app's code reuses the
    # installed layer, and so do apps with the same requirements.
    install_from: tuple[Path, ...] | None = ()
    # Debian packages installed beside Python (a proxy's), in the base image's package sources.
    system_packages: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """What the image is built from; a newer build of the same source replaces it (one of
        another environment, or with other system packages, is another image, kept beside it)."""
        variant = f":{self.variant}" if self.variant else ""
        packages = f":{'+'.join(self.system_packages)}" if self.system_packages else ""
        return f"{self.name}:{self.tree or ''}{variant}{packages}"

    def build_args(self, base: str) -> dict[str, str]:
        return {
            "BASE_IMAGE": base,
            "CODE_DIR": self.code_dir,
            "TREE_DIR": self.tree_dir,
            "TREE_REQUIREMENTS": self.tree_requirements or "",
            "INSTALL_TREE": "1" if self.install_tree else "0",
            "SYSTEM_PACKAGES": " ".join(self.system_packages),
        }


@dataclass(frozen=True)
class Images:
    base: str
    # One per environment, in the plan's order (none where the host runs no target).
    targets: tuple[str, ...]
    # Per user Locust file directory (None: only flaskbench's own locustfile).
    loadgen: dict[str | None, str] = field(default_factory=dict)

    def loadgen_for(self, locustfile: str | None) -> str:
        return self.loadgen[str(Path(locustfile).parent) if locustfile else None]


def target_spec(
    environment: Environment,
    leave_out: tuple[Path, ...] = (),
    system_packages: tuple[str, ...] = (),
) -> ImageSpec:
    """The image of one environment: its build inputs in build/ (envbuild.py, its spec, every
    server's pins and, for the built-in app, its requirements), the app's tree, and
    `system_packages` (a proxy's)."""
    app = environment.app
    pins = {s.pins: f"{BUILD_DIR}/pins/{s.pins.name}" for s in SERVERS.values() if s.pins}
    files = [("envbuild.py", ENVBUILD.read_bytes())]
    files += [(f"pins/{path.name}", path.read_bytes()) for path in pins]
    if app.builtin:
        assert app.requirements is not None
        files.append(("app-requirements.txt", app.requirements.read_bytes()))
        args = ["-r", f"{BUILD_DIR}/app-requirements.txt"]
    elif app.requirements is not None:
        args = ["-r", str(app.requirements.relative_to(app.path))]
    else:
        args = ["."] if app.project else []
    spec = environment.spec(args, pins, ENVIRONMENT_RESULT) | {"pip": ["--no-cache-dir"]}
    files.append(("spec.json", json.dumps(spec, indent=1, sort_keys=True).encode()))
    return ImageSpec(
        "flaskbench-target" if app.builtin else "flaskbench-app",
        HARNESS / TARGET_PACKAGE,
        HARNESS_DIR,
        TARGET_PACKAGE,
        (),
        tree=None if app.builtin else app.path,
        leave_out=leave_out,
        install_from=() if app.builtin else requirement_files(app),
        dockerfile=TARGET_DOCKERFILE,
        build_files=tuple(files),
        variant=environment.describe() if environment.asked else "",
        system_packages=system_packages,
    )


def loadgen_spec(locustfile_dir: Path | None) -> ImageSpec:
    return ImageSpec(
        "flaskbench-locust",
        PROJECT_ROOT / "locustfiles",
        LOCUST_DIR,
        "",
        (LOCUST_PINS,),
        tree=locustfile_dir,
        tree_dir=USER_LOCUST_DIR,
    )


def extra_ca() -> Path | None:
    for variable in ("FLASKBENCH_EXTRA_CA", "PIP_CERT"):
        if value := os.environ.get(variable):
            path = Path(value)
            if not path.is_file():
                raise ImageError(f"{variable}={value} names no file; fix or unset it")
            return path
    return None


def _code_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".py")


def resolve_base(
    client: Any, wanted: str, say: Callable[[str], None], remote_host: str = ""
) -> str:
    """The configured base if present or pullable, else the local Debian base, built if need be
    (only on this machine: on `remote_host`, a host of [hosts], it must be there already)."""
    import docker.errors

    try:
        client.images.get(wanted)
        return wanted
    except docker.errors.ImageNotFound:
        pass
    try:
        say(f"pulling base image {wanted}{f' on {remote_host}' * bool(remote_host)}")
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
    if remote_host:
        raise ImageError(
            f"cannot pull {wanted} on {remote_host} ({reason}) and it has no {LOCAL_BASE}; "
            'use hosts.images = "copy" to build once here and copy the images there'
        )
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


def ensure_images(
    client: Any,
    base_image: str,
    environments: Sequence[Environment],
    locustfiles: Iterable[str | None],
    say: Callable[[str], None],
    log: Path,
    leave_out: tuple[Path, ...] = (),
    roles: frozenset[str] = frozenset({"target", "load"}),
    remote_host: str = "",
    system_packages: tuple[str, ...] = (),
) -> Images:
    """Every image a run needs (or, by `roles`, the target's or the load's only): a target
    image per environment (with `system_packages`: a proxy's) and a Locust image per Locust
    file directory its workloads use (None: flaskbench's own locustfile only)."""
    base = resolve_base(client, base_image, say, remote_host)
    ca_path = extra_ca()
    ca = ca_path.read_bytes() if ca_path else b""
    targets = tuple(
        ensure(client, target_spec(environment, leave_out, system_packages), base, ca, say, log)
        for environment in environments
        if "target" in roles
    )
    loadgen = {
        directory: ensure(
            client, loadgen_spec(Path(directory) if directory else None), base, ca, say, log
        )
        for directory in dict.fromkeys(
            str(Path(f).parent) if f else None for f in [None, *locustfiles]
        )
        if "load" in roles
    }
    return Images(base, targets, loadgen)


def copy_image(
    source: Any, destination: Any, tag: str, where: str, say: Callable[[str], None]
) -> str:
    """Load `tag` from the `source` engine into `destination` (on host `where`) unless that
    already holds the very same image; its image ID, checked to be the source's."""
    import docker.errors

    wanted = source.images.get(tag).id
    try:
        if destination.images.get(tag).id == wanted:
            return str(wanted)
    except docker.errors.ImageNotFound:
        pass
    say(f"copying {tag} to {where}")
    try:
        for message in destination.api.load_image(source.api.get_image(tag), quiet=True):
            if isinstance(message, dict) and message.get("error"):
                raise ImageError(f"loading {tag} into {where} failed: {message['error']}")
        got = destination.images.get(tag).id
    except docker.errors.APIError as exc:
        raise ImageError(f"loading {tag} into {where} failed: {exc.explanation or exc}") from None
    if got != wanted:
        raise ImageError(
            f"{tag} on {where} has image ID {got} after loading, not {wanted}: not the bytes "
            "built here; remove it there (docker rmi) and run again"
        )
    labels = destination.images.get(tag).labels or {}
    if source_label := labels.get(SOURCE_LABEL):
        _remove_older(destination, source_label, tag)
    return str(got)


def ensure(
    client: Any, spec: ImageSpec, base: str, ca: bytes, say: Callable[[str], None], log: Path
) -> str:
    """The tag of the image `spec` describes, built unless an identical one exists."""
    with tempfile.TemporaryDirectory(prefix="flaskbench-build-") as directory:
        context = Path(directory)
        _assemble(spec, context, ca)
        build_args = spec.build_args(base) | {
            k: os.environ[k] for k in PASSED_BUILD_ARGS if os.environ.get(k)
        }
        digest = hashlib.sha256(client.images.get(base).id.encode())
        digest.update(repr(sorted(build_args.items())).encode())
        digest.update(tree_digest(context).encode())
        tag = f"{spec.name}:{digest.hexdigest()[:12]}"
        if client.images.list(name=tag):
            return tag
        say(f"building {tag} (once; later runs reuse it)")
        _build(client, tag, context, build_args, spec.source, log)
    _remove_older(client, spec.source, tag)
    return tag


def _assemble(spec: ImageSpec, context: Path, ca: bytes) -> None:
    code = context / "code" / spec.package
    code.mkdir(parents=True)
    for path in _code_files(spec.code):
        shutil.copy(path, code)
    shutil.copy(spec.dockerfile, context / "Dockerfile")
    for name, content in spec.build_files:
        (context / "build" / name).parent.mkdir(parents=True, exist_ok=True)
        (context / "build" / name).write_bytes(content)
    (context / "extra-ca.pem").write_bytes(ca)
    (context / "requirements.txt").write_text(
        "\n".join(path.read_text().rstrip("\n") for path in spec.requirements) + "\n"
    )
    tree = context / "tree"
    tree.mkdir()
    reqs = context / "reqs"
    reqs.mkdir()
    if spec.tree is not None:
        snapshot(spec.tree, tree, spec.leave_out)
        if spec.install_from is None:
            shutil.copytree(tree, reqs, symlinks=True, dirs_exist_ok=True)
        for path in spec.install_from or ():
            inside = reqs / path.relative_to(spec.tree)
            inside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, inside)


def _remove_older(client: Any, source: str, current: str) -> None:
    """Earlier builds from the same source are dead weight once a new one exists; an image a
    container still uses (another run's) is kept."""
    import docker.errors

    for image in client.images.list(filters={"label": f"{SOURCE_LABEL}={source}"}):
        if current not in image.tags:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=False)


def _build(
    client: Any, tag: str, context: Path, build_args: dict[str, str], source: str, log: Path
) -> None:
    import docker.errors

    lines: list[str] = []
    try:
        for chunk in client.api.build(
            path=str(context),
            tag=tag,
            buildargs=build_args,
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
            labels={"flaskbench": "image", SOURCE_LABEL: source},
        ):
            if text := chunk.get("stream"):
                lines.append(text)
            if error := chunk.get("error"):
                lines.append(error)
                raise ImageError(f"building {tag} failed: {_cause(lines)}; full log in {log}")
    except docker.errors.APIError as exc:
        raise ImageError(f"building {tag} failed: {exc}; full log in {log}") from None
    finally:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.write("".join(lines))


def _cause(lines: list[str]) -> str:
    """pip's own reason when it failed (its last ERROR line), else the build's error."""
    errors = [line.strip() for line in "".join(lines).splitlines() if line.startswith("ERROR:")]
    return errors[-1] if errors else lines[-1].strip()
