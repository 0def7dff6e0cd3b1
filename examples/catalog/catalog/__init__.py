"""A shop's catalogue on PostgreSQL (through Flask-SQLAlchemy) with Redis as a cache: product
pages read through the cache, a sales report that holds a database connection for a while, and
orders that write.

Configured from the environment, as a deployed app is: DATABASE_URL and REDIS_URL, and the
connection pool of each process, DB_POOL_SIZE (SQLAlchemy's default: 5) and DB_MAX_OVERFLOW
(default 10): at most their sum of connections per process, and every request beyond that waits
inside the app for one to come back.
"""

from __future__ import annotations

import os

import redis
from flask import Flask

from catalog import views
from catalog.db import init_app


def create_app() -> Flask:
    app = Flask(__name__)
    # SQLAlchemy's name for psycopg 3, the driver installed here.
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "pool_size": int(os.environ.get("DB_POOL_SIZE", "5")),
        "max_overflow": int(os.environ.get("DB_MAX_OVERFLOW", "10")),
        "pool_timeout": 30,
    }
    app.extensions["cache"] = redis.Redis.from_url(os.environ["REDIS_URL"])
    init_app(app)
    app.register_blueprint(views.bp)
    return app
