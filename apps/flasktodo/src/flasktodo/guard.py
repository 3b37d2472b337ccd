"""What stands between the app and a hostile request: CSRF protection and short 4xx answers.

CSRF, as browsers work: every state-changing request from a browser carries an Origin (or at
least a Referer) header, and a foreign one is refused; HTML forms also carry a token tied to
the session cookie, which another site can neither read nor send (SameSite=Lax). API
clients that are not browsers send no Origin and need no token: JSON bodies cannot be sent
cross-site without CORS, which this app never allows.

Every error answers with its status and one short reason (JSON under /api), never a
traceback or an internal detail.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, abort, jsonify, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
TOKEN_FIELD = "csrf_token"


class PrefixedSessionInterface(SecureCookieSessionInterface):
    """The session cookie is scoped to the app's prefix (SCRIPT_NAME), so apps sharing a
    host name never see each other's cookies."""

    def get_cookie_path(self, app: Flask) -> str:
        return request.script_root or "/"


def csrf_token() -> str:
    """The session's token for HTML forms, made on first use."""
    if TOKEN_FIELD not in session:
        session[TOKEN_FIELD] = secrets.token_urlsafe(32)
    return session[TOKEN_FIELD]


def same_origin(url: str) -> bool:
    """Same scheme and host name as this request (nginx passes the Host without a port)."""
    parts = urlsplit(url)
    return (parts.scheme, parts.hostname) == (request.scheme, request.host.split(":")[0])


def check_request() -> None:
    """Refuse a cross-site state change (403), and a form post without the session's token."""
    if request.method not in UNSAFE:
        return
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(origin):
        abort(403, "cross-site request refused")
    if origin is None and request.referrer and not same_origin(request.referrer):
        abort(403, "cross-site request refused")
    if not request.path.startswith("/api/"):  # the HTML forms
        sent = request.form.get(TOKEN_FIELD, "")
        if not hmac.compare_digest(sent, session.get(TOKEN_FIELD, "\0")):
            abort(403, "the form has expired: reload the page and try again")


def answer(error: HTTPException) -> tuple[Response | str, int]:
    """The status and one short reason: JSON for the API, plain text otherwise."""
    code = error.code or 500
    # Our own reasons are short; werkzeug's default paragraphs give way to the status name.
    ours = code < 500 and error.description != type(error).description
    reason = error.description if ours else error.name.lower()
    if request.path.startswith("/api/"):
        return jsonify(error=reason), code
    return f"{code} {error.name}: {reason}\n", code


def init_app(app: Flask) -> None:
    """Flask logs an unhandled exception and answers it as an InternalServerError, which
    `answer` words too: no traceback or detail reaches the client."""
    app.before_request(check_request)
    app.register_error_handler(HTTPException, answer)
    app.jinja_env.globals["csrf_token"] = csrf_token
