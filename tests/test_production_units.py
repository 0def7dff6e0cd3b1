"""The production shape's pieces without load: the proxy's config and its check, the theory of
slow clients and open loops, the proxy's harness, the open loop's raw data, goals at a rate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fakerun import make_point

from flaskbench.config.clients import Client
from flaskbench.config.load import load_config
from flaskbench.config.openloop import OpenLoop
from flaskbench.config.workloads import Workload
from flaskbench.execute import doctor
from flaskbench.measure.offered import OpenLoopDataError, offered_steps
from flaskbench.measure.recommend import GoalSpec, exclusion
from flaskbench.measure.theory import (
    Work,
    erlang_c,
    expect,
    open_loop_expectation,
    random_spread_busy,
    transfer_of,
    transfer_times,
)
from flaskbench.proxies import reverse_proxy
from flaskbench.proxies.proxy_registry import PROXIES, debian_packages
from flaskbench.proxies.reverse_proxy import ProxySpec
from flaskbench.servers.registry import resolve_target
from flaskbench.servers.server import Setting, Target

PROJECT = Path(__file__).resolve().parent.parent
NGINX = PROXIES["nginx"]


def target(server: str = "gunicorn", proxy: ProxySpec | None = None, **settings: Setting) -> Target:
    found, problems = resolve_target("t", server, settings)
    assert found is not None, problems
    return replace(found, proxy=proxy)


def test_nginx_config_keeps_nginx_defaults_but_where_said() -> None:
    spec = ProxySpec("nginx")
    text = NGINX.config_text(spec, ("127.0.0.1", 8000), 8001, "/tmp/p", 2)
    assert "listen 127.0.0.1:8000;" in text
    assert "server 127.0.0.1:8001;" in text
    assert "worker_processes 2;" in text
    assert "proxy_buffering on;" in text
    assert "proxy_request_buffering on;" in text
    assert "proxy_http_version" not in text
    assert "keepalive 32" not in text
    for path in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{path}_temp_path /tmp/p/{path};" in text
    kept = NGINX.config_text(
        ProxySpec("nginx", buffering=False, request_buffering=False, keepalive=True),
        ("127.0.0.1", 8000),
        8001,
        "/tmp/p",
        1,
    )
    assert "proxy_buffering off;" in kept
    assert "proxy_request_buffering off;" in kept
    assert "proxy_http_version 1.1;" in kept
    assert 'proxy_set_header Connection "";' in kept
    assert "keepalive 32;" in kept
    assert NGINX.argv("/usr/sbin/nginx", "/tmp/p", "/tmp/p/proxy.conf") == [
        "/usr/sbin/nginx", "-e", "stderr", "-p", "/tmp/p", "-c", "/tmp/p/proxy.conf",
    ]  # fmt: skip
    assert debian_packages([None, spec, spec]) == ("nginx",)


def test_a_missing_proxy_is_one_line_with_its_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(PROJECT / "examples" / "production.toml")
    monkeypatch.setattr(reverse_proxy, "SYSTEM_DIRS", ())
    monkeypatch.setenv("PATH", str(tmp_path))
    check = doctor.check_proxies(config)
    assert not check.ok
    assert check.line() == (
        "FAIL proxy: nginx is not installed here (the local runner runs the targets' proxies "
        "from this host) -> apt-get install nginx (or use the docker runner, whose image has it)"
    )
    (tmp_path / "nginx").write_text("#!/bin/sh\n")
    (tmp_path / "nginx").chmod(0o755)
    assert doctor.check_proxies(config).ok
    direct = replace(config, targets=tuple(t for t in config.targets if t.proxy is None))
    assert doctor.check_proxies(direct).detail == "no target is served behind a proxy"


UPLOAD = Workload("up", upload_bytes=1048576, client=Client(send_rate=524288))
DOWNLOAD = Workload("down", download_bytes=1048576, client=Client(receive_rate=1048576))


def test_a_slow_clients_transfer_holds_what_each_model_says() -> None:
    up, down = transfer_of(UPLOAD), transfer_of(DOWNLOAD)
    assert up is not None
    assert down is not None
    beyond = (1048576 - 131072 - 32768) / 524288
    sync = target(worker_class="sync", workers=2)
    assert transfer_times(sync, up) == pytest.approx((beyond, 2.0))
    # A sync worker waits for the client to read its response and hang up (up to 2 s).
    assert transfer_times(sync, down) == pytest.approx((1.0, 1.0))
    gthread = target(worker_class="gthread", workers=2, threads=4)
    assert transfer_times(gthread, up)[0] == pytest.approx(beyond)
    assert transfer_times(gthread, down)[0] == 0
    # A connection accepted at once (a slot free) is read from its first byte.
    assert transfer_times(sync, up, queued=False)[0] == pytest.approx(2.0)
    # waitress reads the whole request before a thread gets it.
    assert transfer_times(target("waitress"), up)[0] == 0
    behind = replace(sync, proxy=ProxySpec("nginx"))
    assert transfer_times(behind, up) == (0.0, 2.0)
    assert transfer_times(behind, down) == (0.0, 1.0)
    # A fast client moves nothing the model counts.
    assert transfer_of(Workload("up", upload_bytes=1048576)) is None


def test_the_ceiling_with_slow_clients() -> None:
    up = transfer_of(UPLOAD)
    sync = target(worker_class="sync", workers=2)
    work = Work(0, 0)
    held = (1048576 - 163840) / 524288
    assert expect(sync, work, 32, 1, up).rps == pytest.approx(2 / held)
    assert expect(sync, work, 32, 1, up).limit == "slots"
    behind = replace(sync, proxy=ProxySpec("nginx"))
    # The clients' own 2 s sets the pace behind the proxy.
    assert expect(behind, work, 32, 1, up).rps == pytest.approx(16)
    assert expect(behind, work, 32, 1, up).limit == "users"
    # Without a transfer, what it always was.
    assert expect(sync, Work(100, 0), 8, 1).rps == pytest.approx(20)


def test_open_loop_queueing_as_m_d_c_and_d_d_c() -> None:
    one = target(worker_class="sync", workers=1)
    work = Work(50, 0)
    # M/D/1 at utilisation 0.5, 0.75, 0.95: a mean wait of rho S / 2 (1 - rho).
    for rate, mean in ((10, 75.0), (15, 125.0), (19, 525.0)):
        found = open_loop_expectation(one, work, rate, 1, "poisson")
        assert found.mean_ms == pytest.approx(mean)
    fixed = open_loop_expectation(one, work, 19, 1, "fixed")
    assert fixed.mean_ms == pytest.approx(50)
    over = open_loop_expectation(one, work, 40, 1, "poisson")
    assert over.utilisation == pytest.approx(2)
    assert over.rps == pytest.approx(20)
    assert over.mean_ms is None
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # A thousand servers stay finite.
    assert 0 <= erlang_c(1000, 900.0) < 1


def test_requests_landing_on_workers_at_random() -> None:
    assert random_spread_busy(8, 2, 4) == pytest.approx(6.90625)
    assert random_spread_busy(8, 1, 8) == pytest.approx(8)
    assert random_spread_busy(64, 2, 4) == pytest.approx(8, abs=1e-6)


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flaskbench_target.proxy", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(PROJECT / "targets"), **(env or {})},
    )


def test_the_proxy_starts_once_the_server_accepts(tmp_path: Path) -> None:
    conf = tmp_path / "p" / "proxy.conf"
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        done = harness(
            "--config", str(conf), "--config-env", "CONF", "--upstream", f"127.0.0.1:{port}",
            "--", sys.executable, "-c", "print('started')",
            env={"CONF": "the config"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "started"
    assert conf.read_text() == "the config"


def test_the_proxy_gives_up_on_a_server_that_never_accepts(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = harness(
        "--config", str(tmp_path / "proxy.conf"), "--config-env", "CONF",
        "--upstream", f"127.0.0.1:{port}", "--wait", "0.3", "--", "true",
        env={"CONF": "x"},
    )  # fmt: skip
    assert done.returncode == 4
    assert done.stderr.strip().startswith("proxy: error: the server did not accept connections")
    bad = harness("--config", "x", "--config-env", "CONF", "--upstream", "nowhere", "--", "true")
    assert bad.returncode == 2


def loadgen(arrivals: object) -> dict[str, object]:
    step = {"index": 0, "users": 1, "start": 0, "measure_start": 2.0, "measure_end": 4.0}
    return {
        "steps": [step | {"rate": 10}],
        "open_loop": {"arrival": "poisson", "rates": [10], "late_ms": 10.0},
        "arrivals": arrivals,
    }


def test_an_open_loops_steps_from_its_raw_data(tmp_path: Path) -> None:
    seconds = [
        {"t": t, "scheduled": 10, "late": late, "dropped": 0, "max_lag_ms": 3.0 + late}
        for t, late in ((1, 5), (2, 0), (3, 1))
    ]
    found = offered_steps(
        loadgen({"seconds": seconds, "unfinished": [{"step": 0, "count": 3, "oldest_ms": 80}]}),  # type: ignore[arg-type]
        tmp_path / "loadgen.json",
    )
    step = found[0]
    assert (step.rate, step.scheduled, step.late, step.unfinished) == (10, 20, 1, 3)
    assert step.max_lag_ms == 4.0
    # 1 late of 20 is above 1%: the step measured the load generator.
    assert step.behind
    assert offered_steps({"steps": []}, tmp_path / "x") == {}  # type: ignore[typeddict-item]
    with pytest.raises(OpenLoopDataError, match="damaged open-loop arrivals"):
        offered_steps(loadgen({"seconds": [{"t": 2}]}), tmp_path / "loadgen.json")  # type: ignore[arg-type]


def test_a_goal_at_a_rate_judges_open_loops_there() -> None:
    goal = GoalSpec(100.0, 32, None, 0.0, rate=40)
    assert goal.for_workload(False) is goal
    at_rate = goal.for_workload(True)
    assert at_rate is not None
    assert at_rate.at == "40 req/s offered"
    slow = make_point(users=40, p99_ms=250.0)
    assert exclusion(slow, at_rate, None) == (
        "p99 250 ms over the goal of 100 ms at 40 req/s offered"
    )
    assert GoalSpec(100.0, 32, None, 0.0).for_workload(True) is None


def test_open_loop_workloads_keep_their_rates_through_meta() -> None:
    from dataclasses import asdict

    from flaskbench.config.workloads import workload_from_meta

    workload = Workload(
        "open", io_ms=5, open_loop=OpenLoop((5, 10), "fixed"), keepalive=False,
        client=Client(receive_rate=1024),
    )  # fmt: skip
    assert workload_from_meta(asdict(workload) | {"path": workload.path}) == workload
