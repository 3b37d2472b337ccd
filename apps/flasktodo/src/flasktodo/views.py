"""HTML pages and the JSON API. Every URL is built with url_for, so it carries the prefix.

Input is checked before it reaches the database: a bad request gets 400 (or 404 for an id
that cannot exist) with a short reason, never a 500."""

from __future__ import annotations

from typing import Any

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
# SQLite's INTEGER range: a larger id cannot name an item (and cannot be bound).
ITEM = "<int(max=9223372036854775807):item_id>"


def clean_title(raw: object) -> str:
    if not isinstance(raw, str):
        abort(400, "title must be a string")
    title = raw.strip()
    if not title or len(title) > MAX_TITLE:
        abort(400, f"title must be 1 to {MAX_TITLE} characters")
    try:
        title.encode("utf-8")
    except UnicodeEncodeError:
        abort(400, "title must be valid Unicode text")
    return title


def json_object() -> dict[str, Any]:
    """The request's JSON body, which must be an object."""
    try:
        payload = request.get_json(silent=True)
    except RecursionError:
        abort(400, "the JSON body is nested too deeply")
    if not isinstance(payload, dict):
        abort(400, "the body must be a JSON object")
    return payload


@bp.get("/")
def index() -> str:
    version = current_app.config["VERSION"]
    return render_template("index.html", items=db.all_items(), version=version)


@bp.post("/items")
def add() -> Response:
    db.add_item(clean_title(request.form.get("title")), request.remote_addr or "")
    return redirect(url_for("todo.index"))


@bp.post(f"/items/{ITEM}/done")
def complete(item_id: int) -> Response:
    if not db.set_done(item_id, request.form.get("done", "1") == "1"):
        abort(404, "no such item")
    return redirect(url_for("todo.index"))


@bp.post(f"/items/{ITEM}/delete")
def remove(item_id: int) -> Response:
    if not db.delete_item(item_id):
        abort(404, "no such item")
    return redirect(url_for("todo.index"))


@bp.get("/api/items")
def api_list() -> Response:
    return jsonify(items=db.all_items())


@bp.post("/api/items")
def api_add() -> tuple[Response, int]:
    item = db.add_item(clean_title(json_object().get("title")), request.remote_addr or "")
    return jsonify(item), 201


@bp.get(f"/api/items/{ITEM}")
def api_get(item_id: int) -> Response:
    return jsonify(db.get_item(item_id) or abort(404, "no such item"))


@bp.patch(f"/api/items/{ITEM}")
def api_update(item_id: int) -> Response:
    done = json_object().get("done")
    if not isinstance(done, bool):
        abort(400, "done must be true or false")
    if not db.set_done(item_id, done):
        abort(404, "no such item")
    return jsonify(db.get_item(item_id))


@bp.delete(f"/api/items/{ITEM}")
def api_delete(item_id: int) -> tuple[str, int]:
    if not db.delete_item(item_id):
        abort(404, "no such item")
    return "", 204


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the app can reach its database and it has this release's schema; what a
    load balancer or deploy checks."""
    version = current_app.config["VERSION"]
    try:
        db.ready()
    except db.Unavailable as error:
        return jsonify(status="error", error=error.reason, version=version), 503
    return jsonify(status="ok", version=version, client=request.remote_addr,
                   scheme=request.scheme), 200
