"""app.revision: the app as committed at one or more git revisions, each a tree of its own.

`revision = "v1.4"` serves the app as it was at that revision. A list is a sweep: every target
runs once per revision, named NAME-<revision>, so two revisions of the app are compared in one
run, their cells interleaved trial by trial, like any two targets. Each revision is exported
from the app's repository (`git archive`: what that commit holds, never the working tree's
changes or untracked files) into a directory of its own under .app-revisions/, kept by commit,
so later runs reuse it and the user's checkout is never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from flaskbench import PROJECT_ROOT
from flaskbench.config.app import App
from flaskbench.config.problems import Problems
from flaskbench.servers.server import Target

REVISIONS_DIR = PROJECT_ROOT / ".app-revisions"
KEY = ("app", "revision")
GIT_TIMEOUT_S = 60


@dataclass(frozen=True)
class Revision:
    """One revision the config names, and the commit it was when the run was configured."""

    name: str
    commit: str


class RevisionError(Exception):
    """A revision cannot be exported; the message (for app.revision) says why."""


def parse_revisions(value: object, app: App, problems: Problems) -> tuple[Revision, ...]:
    """`app.revision` as written (a name, or a list of them), each resolved to its commit."""
    names = [value] if isinstance(value, str) else value
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        problems.add(KEY, 'must be a git revision, or a list of them: ["main", "my-branch"]')
        return ()
    if len(set(names)) < len(names):
        problems.add(KEY, "names a revision twice; list each once")
        return ()
    if app.builtin:
        problems.add(KEY, "needs an [app] of your own (app.path in a git checkout)")
        return ()
    if _git(app.path, "rev-parse", "--show-toplevel") is None:
        problems.add(KEY, f"{app.path} is not in a git checkout; app.revision needs one")
        return ()
    found = []
    for name in names:
        commit = _git(app.path, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
        if commit is None:
            problems.add(
                KEY,
                f"{name!r} is no commit of the repository at {app.path}; name a branch, tag or "
                "commit (`git log --oneline --all` lists them)",
            )
        else:
            found.append(Revision(name, commit))
    return tuple(found)


def with_revisions(targets: list[Target], revisions: tuple[Revision, ...]) -> list[Target]:
    """Every target at each revision: one revision keeps the targets' names, several make a
    target per revision, named NAME-<revision>."""
    if len(revisions) == 1:
        return [replace(t, revision=revisions[0].name) for t in targets]
    return [
        replace(t, name=f"{t.name}-{name_part(r.name)}", revision=r.name)
        for t in targets
        for r in revisions
    ]


def name_part(revision: str) -> str:
    """A revision's part of a target's name (my-branch, v1.4, feature-x for feature/x)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", revision).strip("-") or "revision"


def revision_app(app: App, revision: Revision) -> App:
    """The app as it was at `revision`: its tree exported (once per commit), the app's
    directory and requirements file at the same place inside it."""
    top = Path(_git(app.path, "rev-parse", "--show-toplevel") or app.path).resolve()
    tree = export(top, revision.commit) / app.path.relative_to(top)
    requirements = (
        tree / app.requirements.relative_to(app.path) if app.requirements is not None else None
    )
    if not tree.is_dir() or (requirements is not None and not requirements.is_file()):
        raise RevisionError(
            f"{revision.name} ({revision.commit[:12]}) has no app at "
            f"{app.path} or no app.requirements there; check both against that revision"
        )
    return replace(
        app,
        path=tree,
        requirements=requirements,
        project=requirements is None and (tree / "pyproject.toml").is_file(),
        revision=revision.name,
        commit=revision.commit,
    )


def export(repository: Path, commit: str) -> Path:
    """The repository's tree at `commit`, exported once into .app-revisions/<commit>."""
    destination = REVISIONS_DIR / commit
    if destination.is_dir():
        return destination
    REVISIONS_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REVISIONS_DIR, prefix=".export-") as scratch:
        archive = Path(scratch) / "tree.tar"
        done = subprocess.run(
            ["git", "-C", str(repository), "archive", "--format=tar", "-o", str(archive), commit],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RevisionError(f"cannot export {commit[:12]}: {reason}")
        tree = Path(scratch) / "tree"
        tree.mkdir()
        # git's own archive of its own commit: tar, not Python's extractor, whose filters (which
        # this needs none of) differ between 3.11 releases.
        untar = subprocess.run(
            ["tar", "-x", "-f", str(archive), "-C", str(tree)], capture_output=True, text=True
        )
        if untar.returncode != 0:
            reason = (untar.stderr.strip().splitlines() or ["no output"])[-1]
            raise RevisionError(f"cannot unpack {commit[:12]}: {reason}")
        os.chmod(tree, 0o755)
        # Another run exporting the same commit at once may have finished first: same content.
        try:
            tree.rename(destination)
        except OSError:
            shutil.rmtree(tree, ignore_errors=True)
    return destination


def _git(path: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None
