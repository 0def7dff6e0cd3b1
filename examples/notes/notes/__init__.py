"""A small notes app: blueprints, Jinja templates and a SQLite database, as Flask apps are.

flask --app notes init-db      create the database (instance/notes.sqlite) with a few notes
flask --app notes run          serve it (flaskbench serves it as notes:create_app())
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from notes import api, db, views


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
        DATABASE=os.path.join(app.instance_path, "notes.sqlite"),
    )
    if test_config:
        app.config.update(test_config)
    db.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    return app
