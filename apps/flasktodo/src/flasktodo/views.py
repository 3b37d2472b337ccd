"""HTML pages and the JSON API. Every URL is built with url_for, so it carries the prefix."""

from __future__ import annotations

import sqlite3

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from flasktodo import db

bp = Blueprint("todo", __name__)
MAX_TITLE = 200


def clean_title(raw: object) -> str:
    title = str(raw or "").strip()
    if not title or len(title) > MAX_TITLE:
        abort(400, f"title must be 1 to {MAX_TITLE} characters")
    return title


@bp.get("/")
def index() -> str:
    version = current_app.config["VERSION"]
    return render_template("index.html", items=db.all_items(), version=version)


@bp.post("/items")
def add() -> Response:
    db.add_item(clean_title(request.form.get("title")), request.remote_addr or "")
    return redirect(url_for("todo.index"))


@bp.post("/items/<int:item_id>/done")
def complete(item_id: int) -> Response:
    if not db.set_done(item_id, request.form.get("done", "1") == "1"):
        abort(404)
    return redirect(url_for("todo.index"))


@bp.post("/items/<int:item_id>/delete")
def remove(item_id: int) -> Response:
    if not db.delete_item(item_id):
        abort(404)
    return redirect(url_for("todo.index"))


@bp.get("/api/items")
def api_list() -> Response:
    return jsonify(items=db.all_items())


@bp.post("/api/items")
def api_add() -> tuple[Response, int]:
    payload = request.get_json(silent=True) or {}
    item = db.add_item(clean_title(payload.get("title")), request.remote_addr or "")
    return jsonify(item), 201


@bp.get("/api/items/<int:item_id>")
def api_get(item_id: int) -> Response:
    return jsonify(db.get_item(item_id) or abort(404))


@bp.patch("/api/items/<int:item_id>")
def api_update(item_id: int) -> Response:
    payload = request.get_json(silent=True) or {}
    if not isinstance(payload.get("done"), bool):
        abort(400, "done must be true or false")
    if not db.set_done(item_id, payload["done"]):
        abort(404)
    return jsonify(db.get_item(item_id))


@bp.delete("/api/items/<int:item_id>")
def api_delete(item_id: int) -> tuple[str, int]:
    if not db.delete_item(item_id):
        abort(404)
    return "", 204


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the app can reach its database; what a load balancer or deploy checks."""
    version = current_app.config["VERSION"]
    try:
        db.ping()
    except sqlite3.Error as error:
        return jsonify(status="error", error=str(error), version=version), 503
    return jsonify(status="ok", version=version, client=request.remote_addr,
                   scheme=request.scheme), 200
