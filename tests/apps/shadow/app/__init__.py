"""An app whose top-level modules are named after every module flaskbench's harness has on the
target side (and whose package is named `app`): it answers 200 only when every one of those
names is its own module, and when its environment is what its config passes (PASSED, through
app.env) and nothing else of the host's (tests/test_realapps.py sets FLASKBENCH_TEST_LEAK_CANARY
in flaskbench's own environment)."""

import importlib
import os

from flask import Flask, jsonify

HARNESS_NAMES = (
    "launch",
    "appload",
    "appdir",
    "gauge",
    "builtin_app",
    "devserver",
    "serve",
    "asgiserve",
    "bench_gauge",
)
CANARY = "FLASKBENCH_TEST_LEAK_CANARY"
PASSED = "through app.env"


def create_app():
    app = Flask(__name__)
    modules = {name: importlib.import_module(name) for name in HARNESS_NAMES}

    @app.get("/")
    def home():
        wrong = sorted(n for n, m in modules.items() if getattr(m, "OWNER", None) != "shadow")
        if wrong:
            return jsonify(not_the_apps=wrong), 500
        if CANARY in os.environ:
            return jsonify(leaked=CANARY), 500
        if os.environ.get("PASSED") != PASSED:
            return jsonify(missing="PASSED"), 500
        return jsonify(owner="shadow", modules=sorted(modules))

    return app
