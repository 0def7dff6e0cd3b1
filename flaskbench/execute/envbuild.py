"""Build one environment targets are served from, inside the Python that will run it (a
virtualenv of the local runner, or an image's while it is built): the app's requirements as they
are, and the servers at versions pip's resolver finds beside them.

    python envbuild.py SPEC.json        (in the directory the app's requirements are read from)

This file runs on its own, with the standard library and the environment's pip only (no
flaskbench, no packaging): flaskbench/execute/environments.py writes the SPEC and reads the
result. SPEC is a JSON object:

- "app": pip's arguments for the app (["-r", "requirements.txt"], ["."] or []);
- "constraints": files every pip call takes as -c (flaskbench's pins, app.servers = "flaskbench");
- "override": distributions whose lines in the app's requirement files are left out (in this
  copy of them): a target asked for another version of that server;
- "servers": [{"name": ..., "options": [[requirement, ...], ...]}], each server's options most
  wanted first (flaskbench's pins, then the newest versions that fit);
- "needs": [{"package": ..., "below": "21", "requirements": [...]}]: what versions of a package
  below `below` need installed beside them;
- "pip": extra pip options; "result": where the result goes.

Every server starts at its first option; while pip cannot install them together with the app,
the servers pip's error names (each server's requirements are a file of its own, so pip names
it) move to their next option, and a server out of options is left out with pip's reason. When
pip's error names no server, the app alone is tried: if it cannot be installed, nothing can (exit
1, pip's reason on the last line, as "ERROR: ..."); else the last server still in moves on.
The result: {"python", "servers": {name: {"option": index or null, "failures": [reason...]}},
"packages": {distribution: version}}.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULT_FORMAT = 1
# How a requirement line starts: its distribution's name (not a path, URL or option).
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?=$|[\[;=<>!~@ \t])")
_INCLUDE = re.compile(r"\s*(?:-r|--requirement)[\s=]+(\S+)")
# Lines of pip's conflict explanation beyond which nothing is quoted.
CAUSE_LINES = 4
_DEPENDS = re.compile(r"(\S+) (\S+) depends on (.+)")


class BuildFailed(Exception):
    """The app's own requirements cannot be installed; the message is pip's reason."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def leave_out(requirements: Path, names: set[str], seen: frozenset[Path] = frozenset()) -> None:
    """Comment out the lines naming `names` in a requirements file and those it includes."""
    if requirements in seen or not requirements.is_file():
        return
    kept = []
    for line in requirements.read_text().splitlines():
        found = _NAME.match(line)
        if found and canonical(found.group(1)) in names:
            kept.append(f"# left out by flaskbench (a target asks for another version): {line}")
            continue
        if include := _INCLUDE.match(line):
            leave_out(requirements.parent / include.group(1), names, seen | {requirements})
        kept.append(line)
    requirements.write_text("\n".join(kept) + "\n")


def cause(output: str) -> str:
    """pip's reason for a failure, in one line."""
    lines = [line.rstrip() for line in output.splitlines()]
    if "The conflict is caused by:" in lines:
        start = lines.index("The conflict is caused by:") + 1
        found: list[str] = []
        for line in lines[start:]:
            if not line.strip():
                break
            # Environment markers say nothing a reader needs here.
            found.append(line.strip().split("; ", 1)[0])
        return "; ".join(_collapsed(found)[:CAUSE_LINES])
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    return errors[0] if errors else (lines[-1] if lines else "pip failed without a word")


def _collapsed(lines: list[str]) -> list[str]:
    """pip's explanation without repeats: every version of a package it tried, as a range."""
    versions: dict[str, list[str]] = {}
    needs: dict[str, list[str]] = {}
    others: list[str] = []
    for line in lines:
        if found := _DEPENDS.fullmatch(line):
            package, version, need = found.groups()
            versions.setdefault(package, []).append(version)
            if need not in needs.setdefault(package, []):
                needs[package].append(need)
        elif line not in others:
            others.append(line)
    for package, tried in versions.items():
        ordered = sorted(set(tried), key=release)
        span = ordered[0] if len(ordered) == 1 else f"{ordered[0]} to {ordered[-1]}"
        verb = "depends" if len(ordered) == 1 else "depend"
        others.append(f"{package} {span} {verb} on {' or '.join(needs[package])}")
    return others


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version (enough to compare it with a `below` bound)."""
    found = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in found.group(0).split(".")) if found else ()


def installed() -> dict[str, str]:
    """{distribution: version} of everything installed here."""
    return {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}


class Builder:
    def __init__(self, spec: dict[str, Any], work: Path) -> None:
        self.spec = spec
        self.work = work
        self.pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
        self.pip += list(spec.get("pip", []))
        for path in spec.get("constraints", []):
            self.pip += ["-c", path]

    def attempt(self, files: list[Path], dry_run: bool = False) -> tuple[bool, str]:
        argv = [*self.pip, *self.spec["app"], *(part for f in files for part in ("-r", str(f)))]
        if dry_run:
            argv[4:4] = ["--dry-run", "--ignore-installed"]
        print("$ " + " ".join(argv), flush=True)
        done = subprocess.run(argv, capture_output=True, text=True)
        print(done.stdout + done.stderr, flush=True)
        return done.returncode == 0, done.stdout + done.stderr

    def build(self) -> dict[str, Any]:
        servers = {s["name"]: s["options"] for s in self.spec["servers"]}
        choice = dict.fromkeys(servers, 0)
        failures: dict[str, list[str]] = {name: [] for name in servers}
        while True:
            active = [name for name in servers if choice[name] < len(servers[name])]
            files = [self._option_file(name, servers[name][choice[name]]) for name in active]
            ok, output = self.attempt(files)
            if ok:
                break
            # pip names the requirement files involved in its errors (not in what it collected).
            errors = "\n".join(line for line in output.splitlines() if line.startswith("ERROR"))
            blamed = [name for name, path in zip(active, files, strict=True) if path.name in errors]
            if not blamed:
                if not active or not self.attempt([], dry_run=True)[0]:
                    raise BuildFailed(cause(output))
                blamed = active[-1:]
            for name in blamed:
                failures[name].append(cause(output))
                choice[name] += 1
        self._install_needs()
        return {
            "format": RESULT_FORMAT,
            "python": platform.python_version(),
            "servers": {
                name: {
                    "option": choice[name] if choice[name] < len(options) else None,
                    "failures": failures[name],
                }
                for name, options in servers.items()
            },
            "packages": installed(),
        }

    def _option_file(self, server: str, lines: list[str]) -> Path:
        """A server's requirements as a file named for it, which pip names in its errors."""
        path = self.work / f"flaskbench-server-{server}.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _install_needs(self) -> None:
        have = {canonical(name): version for name, version in installed().items()}
        wanted = [
            requirement
            for need in self.spec.get("needs", [])
            if (version := have.get(canonical(need["package"])))
            and release(version) < release(need["below"])
            for requirement in need["requirements"]
        ]
        if wanted:
            argv = [*self.pip, *wanted]
            print("$ " + " ".join(argv), flush=True)
            done = subprocess.run(argv, capture_output=True, text=True)
            print(done.stdout + done.stderr, flush=True)
            if done.returncode != 0:
                raise BuildFailed(cause(done.stdout + done.stderr))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python envbuild.py SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    app = spec["app"]
    if spec.get("override") and app[:1] == ["-r"]:
        leave_out(Path(app[1]), {canonical(name) for name in spec["override"]})
    with tempfile.TemporaryDirectory(prefix="flaskbench-envbuild-") as work:
        try:
            result = Builder(spec, Path(work)).build()
        except BuildFailed as failure:
            print(f"ERROR: {failure}", flush=True)
            return 1
    Path(spec["result"]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
