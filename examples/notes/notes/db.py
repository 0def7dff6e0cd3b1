"""One SQLite connection per request, closed when the request ends; `flask init-db` makes the
database afresh."""

from __future__ import annotations

import os
import sqlite3

import click
from flask import Flask, current_app, g

SEED = [
    ("Welcome", "Notes are kept in SQLite, one row each."),
    ("Shopping", "Bread, milk, coffee."),
    ("Ideas", "Measure before tuning."),
]


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        # Writers wait for each other instead of failing while one holds the lock.
        g.db = sqlite3.connect(current_app.config["DATABASE"], timeout=30)
        g.db.row_factory = sqlite3.Row
    return g.db


def close_db(error: BaseException | None = None) -> None:
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()


def init_db() -> None:
    os.makedirs(current_app.instance_path, exist_ok=True)
    db = get_db()
    with current_app.open_resource("schema.sql") as schema:
        db.executescript(schema.read().decode())
    # Readers do not block the writer, nor the writer the readers.
    db.execute("PRAGMA journal_mode=WAL")
    db.executemany("INSERT INTO note (title, body) VALUES (?, ?)", SEED)
    db.commit()


@click.command("init-db")
def init_db_command() -> None:
    """Create the database afresh, with a few notes."""
    init_db()
    click.echo(f"initialised {current_app.config['DATABASE']}")


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
