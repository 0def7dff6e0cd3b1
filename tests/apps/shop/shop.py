"""A tiny Flask app for flaskbench's own tests: it writes to its directory, reads its environment,
and can be made to fail in each way a real app can."""

import os
import re
import time
from pathlib import Path

from flask import Flask, abort, redirect, request


def create_app(greeting="hello"):
    app = Flask(__name__, instance_relative_config=True)
    state = Path(app.instance_path)
    served = {"crash": 0}

    @app.get("/")
    def index():
        # Every request writes into the app's own directory, as apps with SQLite files do.
        state.mkdir(exist_ok=True)
        with open(state / "visits.txt", "a") as visits:
            visits.write("x")
        return f"{greeting} {(state / 'setup.txt').read_text().strip()}"

    @app.get("/slow")
    def slow():
        time.sleep(0.02)
        return "slow"

    @app.post("/items")
    def create():
        if not request.form.get("name"):
            abort(400)
        return redirect("/", code=303)

    @app.get("/secret")
    def secret():
        # The token must arrive intact; its value must never be written down by flaskbench.
        if not re.fullmatch(r"sk-[a-z0-9]{21}", os.environ.get("TOKEN", "")):
            abort(500)
        return "token ok"

    @app.get("/crash")
    def crash():
        served["crash"] += 1
        if served["crash"] > 1:
            raise RuntimeError("the shop's database went away")
        return "fine, once"

    return app


def broken():
    raise RuntimeError("no database configured")
