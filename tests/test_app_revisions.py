"""app.revision: the app as committed at git revisions, compared in one interleaved run."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from benchrun import flaskbench, free_port, run_dir_of, summary

from flaskbench.cli import UsageError, _same_revisions
from flaskbench.config import revisions
from flaskbench.config.load import Overrides, load_config
from flaskbench.config.problems import ConfigError
from flaskbench.execute.environments import plan_environments

SHOP = Path(__file__).resolve().parent / "apps" / "shop"
APP = """from flask import Flask

app = Flask(__name__)


@app.get("/")
def home() -> str:
    return open("mark.txt").read()
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository whose app (in web/) says "one" on main and "two" on branch two; the working
    tree says "dirty", uncommitted. Revisions are exported under tmp_path."""
    monkeypatch.setattr(revisions, "REVISIONS_DIR", tmp_path / "revisions")
    repo = tmp_path / "repo"
    web = repo / "web"
    web.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.invalid")
    git(repo, "config", "user.name", "test")
    (web / "webapp.py").write_text(APP)
    # The shop app's pins: the same environment as its tests', built once.
    (web / "requirements.txt").write_text((SHOP / "requirements.txt").read_text())
    (web / "mark.txt").write_text("one\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    git(repo, "checkout", "-q", "-b", "two")
    (web / "mark.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "two")
    git(repo, "checkout", "-q", "main")
    (web / "mark.txt").write_text("dirty\n")
    return repo


def write(directory: Path, repo: Path, revision: str, extra: str = "") -> Path:
    path = directory / "bench.toml"
    path.write_text(
        f"""[run]
runner = "local"
port = {free_port()}
master_port = {free_port()}
results_dir = "{directory / "results"}"
ready_timeout = "20s"
[load]
users = [1]
warmup = "1s"
measure = "2s"
repeats = 2
[app]
path = "{repo / "web"}"
wsgi = "webapp:app"
requirements = "requirements.txt"
setup = "cat mark.txt"
revision = {revision}
[targets.web]
server = "gunicorn"
worker_class = "sync"
workers = 1
[workloads.home]
path = "/"
{extra}"""
    )
    return path


def test_each_revision_is_a_target_serving_its_own_tree(tmp_path: Path, repo: Path) -> None:
    config = load_config(write(tmp_path, repo, '["main", "two"]'), Overrides())
    assert [(t.name, t.revision) for t in config.targets] == [
        ("web-main", "main"),
        ("web-two", "two"),
    ]
    commits = {n: a.commit for n, a in config.revision_apps.items()}
    assert commits == {"main": git(repo, "rev-parse", "main"), "two": git(repo, "rev-parse", "two")}
    marks = {n: (a.path / "mark.txt").read_text() for n, a in config.revision_apps.items()}
    assert marks == {"main": "one\n", "two": "two\n"}
    assert config.revision_apps["two"].requirements == config.revision_apps["two"].path / (
        "requirements.txt"
    )
    # Each revision is an app of its own: an environment each, with its own tree.
    plan = plan_environments(config.app, config.targets, config.revision_apps)
    trees = [plan.environments[plan.of_target[t.name]].app.path for t in config.targets]
    assert trees == [config.revision_apps["main"].path, config.revision_apps["two"].path]
    # The user's checkout is left as it was.
    assert git(repo, "status", "--porcelain") == "M web/mark.txt"


def test_one_revision_keeps_the_targets_names(tmp_path: Path, repo: Path) -> None:
    config = load_config(write(tmp_path, repo, '"two"'), Overrides())
    assert [(t.name, t.revision) for t in config.targets] == [("web", "two")]


@pytest.mark.parametrize(
    ("revision", "says"),
    [
        ('["main", "nowhere"]', "app.revision: 'nowhere' is no commit of the repository"),
        ('["main", "main"]', "app.revision: names a revision twice"),
        ("[]", "app.revision: must be a git revision, or a list of them"),
        ("3", "app.revision: must be a git revision, or a list of them"),
    ],
)
def test_a_bad_revision_is_one_line_naming_the_key(
    tmp_path: Path, repo: Path, revision: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(write(tmp_path, repo, revision), Overrides())


def test_a_revision_needs_a_git_checkout(tmp_path: Path, repo: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "webapp.py").write_text(APP)
    path = write(tmp_path, repo, '"main"')
    path.write_text(
        path.read_text()
        .replace(str(repo / "web"), str(outside))
        .replace('requirements = "requirements.txt"\n', "")
    )
    with pytest.raises(ConfigError, match=r"is not in a git checkout; app\.revision needs one"):
        load_config(path, Overrides())


@pytest.mark.load
def test_two_revisions_are_compared_in_one_interleaved_run(tmp_path: Path, repo: Path) -> None:
    config = write(tmp_path, repo, '["main", "two"]', '[compare]\nbaseline = "web-main"\n')
    result = flaskbench("run", "--config", str(config), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = run_dir_of(result)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert {n: t["revision"] for n, t in meta["targets"].items()} == {
        "web-main": "main",
        "web-two": "two",
    }
    assert meta["app"]["revisions"] == {
        "main": git(repo, "rev-parse", "main"),
        "two": git(repo, "rev-parse", "two"),
    }
    # Both revisions in every trial, each cell served from its revision's tree (never the
    # working tree's uncommitted "dirty").
    orders = meta["trials"]["order"]
    assert len(orders) == 2
    assert all({c.split("--")[0] for c in order} == {"web-main", "web-two"} for order in orders)
    for cell in (p for p in (run_dir / "raw").iterdir() if p.is_dir()):
        said = (cell / "setup.log").read_text().split()
        assert said == (["one"] if cell.name.startswith("web-main--") else ["two"]), cell.name
    rows = summary(run_dir)
    assert {r["target"] for r in rows} == {"web-main", "web-two"}
    assert all(r["failures"] == "0" for r in rows)
    # The comparison of the two revisions, trial by trial.
    report = (run_dir / "report.md").read_text()
    assert "## Against web-main" in report
    assert "| web-two | home | 1 | rps |" in report


def test_a_resumed_run_refuses_a_revision_that_moved(tmp_path: Path, repo: Path) -> None:
    config = load_config(write(tmp_path, repo, '["main", "two"]'), Overrides())
    began = {"main": git(repo, "rev-parse", "main"), "two": git(repo, "rev-parse", "two")}
    _same_revisions(began, config)
    moved = r"app\.revision: two is at \w+ now but the run began at 0000"
    with pytest.raises(UsageError, match=moved):
        _same_revisions({**began, "two": "0" * 40}, config)
