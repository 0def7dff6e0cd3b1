"""The JSON API: the number of notes and the latest ones."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from notes.db import get_db

bp = Blueprint("api", __name__)


@bp.get("/notes")
def latest() -> dict[str, Any]:
    db = get_db()
    count = db.execute("SELECT COUNT(*) FROM note").fetchone()[0]
    rows = db.execute("SELECT id, title FROM note ORDER BY id DESC LIMIT 10").fetchall()
    return {"count": count, "latest": [dict(row) for row in rows]}
