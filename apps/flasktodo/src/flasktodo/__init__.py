"""FlaskTODO: a small TODO list with HTML pages, a JSON API and SQLite or PostgreSQL storage.

Configuration comes from the Python file named by the FLASKTODO_CONFIG environment variable
(DATABASE, SECRET_KEY, DEBUG), and DATABASE_URL from the environment: with it, the items
live in PostgreSQL, else in the SQLite file DATABASE. The app is correct under a URL prefix
(SCRIPT_NAME) and behind one reverse proxy: it takes the client address and scheme from the
proxy's headers.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flasktodo import db, guard, views

__version__ = version("flasktodo")
CONFIG_ENV = "FLASKTODO_CONFIG"


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app from the config file in $FLASKTODO_CONFIG, then `overrides` (for tests)."""
    app = Flask(__name__)
    app.config.update(
        DEBUG=False, DATABASE=None, VERSION=__version__,
        # The session holds only the CSRF token. Its cookie is the app's own (named after
        # it, scoped to its prefix), HTTPS only, out of reach of scripts, and not sent on
        # cross-site requests (SameSite=Lax).
        SESSION_COOKIE_NAME="flasktodo_session", SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        # Bodies beyond this are refused with 413 before they are read (nginx caps too).
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if overrides is None:
        app.config.from_envvar(CONFIG_ENV)
    else:
        app.config.update(overrides)
    app.config.setdefault("DATABASE_URL", os.environ.get("DATABASE_URL"))
    for key in ("SECRET_KEY", *(() if app.config["DATABASE_URL"] else ("DATABASE",))):
        if not app.config.get(key):
            raise RuntimeError(f"flasktodo: {key} is not set in the config file")
    # gunicorn listens on loopback behind exactly one proxy (nginx), which appends the
    # client's address to X-Forwarded-For and sets X-Forwarded-Proto: trust that one hop
    # only, so a client cannot spoof its address. The host comes from nginx's Host header.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    app.session_interface = guard.PrefixedSessionInterface()
    db.init_app(app)
    guard.init_app(app)
    app.register_blueprint(views.bp)
    return app
