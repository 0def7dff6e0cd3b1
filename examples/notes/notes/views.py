"""The HTML pages: the latest notes, one note, and a form that adds one."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from notes.db import get_db

bp = Blueprint("notes", __name__)


@bp.get("/")
def index() -> str:
    notes = (
        get_db()
        .execute("SELECT id, title, body, created FROM note ORDER BY id DESC LIMIT 20")
        .fetchall()
    )
    return render_template("index.html", notes=notes)


@bp.get("/notes/<int:note_id>")
def show(note_id: int) -> str:
    note = get_db().execute("SELECT * FROM note WHERE id = ?", (note_id,)).fetchone()
    if note is None:
        abort(404)
    return render_template("note.html", note=note)


@bp.post("/notes")
def create() -> Response:
    title = request.form.get("title", "").strip()
    body = request.form.get("body", "").strip()
    if not title:
        abort(400, "a note needs a title")
    db = get_db()
    cursor = db.execute("INSERT INTO note (title, body) VALUES (?, ?)", (title, body))
    db.commit()
    return redirect(url_for("notes.show", note_id=cursor.lastrowid), code=303)
