"""FlaskTODO behaviour through Flask's test client, mounted under a prefix like in production."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flasktodo import create_app, db
from flasktodo.cli import main

PREFIX = "/flasktodo"
BASE = f"https://todo.test{PREFIX}"


def migrated(config: dict) -> Flask:
    """The app, its database migrated as a deploy's release command does."""
    app = create_app(config)
    with app.app_context():
        db.migrate()
    return app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return migrated({"DATABASE": str(tmp_path / "todo.sqlite3"), "SECRET_KEY": "test"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def get(client: FlaskClient, path: str, **kwargs):
    return client.get(path, base_url=BASE, **kwargs)


def token(client: FlaskClient) -> str:
    """The CSRF token of the client's session, from the page as a browser gets it."""
    page = get(client, "/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def post(client: FlaskClient, path: str, data: dict | None = None, **kwargs):
    """A form post as the page sends it: with the session's token and the page's Origin."""
    data = {"csrf_token": token(client), **(data or {})}
    headers = {"Origin": "https://todo.test", **kwargs.pop("headers", {})}
    return client.post(path, base_url=BASE, data=data, headers=headers, **kwargs)


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.py"
    config.write_text(f"DATABASE = {str(tmp_path / 'db.sqlite3')!r}\nSECRET_KEY = 'k'\n")
    monkeypatch.setenv("FLASKTODO_CONFIG", str(config))
    app = create_app()
    assert app.config["DATABASE"] == str(tmp_path / "db.sqlite3")
    assert app.config["DEBUG"] is False


def test_missing_secret_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"DATABASE": str(tmp_path / "db.sqlite3")})


def test_empty_list_page_has_prefixed_links(client: FlaskClient) -> None:
    page = get(client, "/").get_data(as_text=True)
    assert "Nothing to do." in page
    urls = re.findall(r'(?:href|action)="([^"]+)"', page)
    assert urls, "the page has links and forms"
    assert all(url.startswith(PREFIX + "/") for url in urls), urls
    assert f'href="{PREFIX}/static/style.css"' in page


def test_add_complete_delete_through_html_forms(client: FlaskClient) -> None:
    response = post(client, "/items", data={"title": "water plants"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"{PREFIX}/"
    assert "water plants" in get(client, "/").get_data(as_text=True)

    post(client, "/items/1/done", data={"done": "1"})
    assert get(client, "/api/items/1").get_json()["done"] is True
    post(client, "/items/1/done", data={"done": "0"})
    assert get(client, "/api/items/1").get_json()["done"] is False

    assert post(client, "/items/1/delete").status_code == 302
    assert get(client, "/api/items/1").status_code == 404


def test_json_api_round_trip(client: FlaskClient) -> None:
    created = client.post("/api/items", json={"title": "write tests"}, base_url=BASE)
    assert created.status_code == 201
    item = created.get_json()
    assert item["title"] == "write tests" and item["done"] is False

    updated = client.patch(f"/api/items/{item['id']}", json={"done": True}, base_url=BASE)
    assert updated.get_json()["done"] is True
    assert [i["title"] for i in get(client, "/api/items").get_json()["items"]] == ["write tests"]

    assert client.delete(f"/api/items/{item['id']}", base_url=BASE).status_code == 204
    assert client.delete(f"/api/items/{item['id']}", base_url=BASE).status_code == 404


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_bad_titles_are_rejected(client: FlaskClient, title: str) -> None:
    assert client.post("/api/items", json={"title": title}, base_url=BASE).status_code == 400
    assert post(client, "/items", data={"title": title}).status_code == 400


def test_items_persist_in_sqlite_across_app_instances(tmp_path: Path) -> None:
    config = {"DATABASE": str(tmp_path / "todo.sqlite3"), "SECRET_KEY": "k"}
    migrated(config).test_client().post("/api/items", json={"title": "kept"})
    items = create_app(config).test_client().get("/api/items").get_json()["items"]
    assert [item["title"] for item in items] == ["kept"]


def test_migrate_makes_the_schema_once_and_healthz_waits_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Never migrated: /healthz answers 503 naming the cure. `flasktodo migrate` applies
    each migration once; a second run applies none."""
    config = tmp_path / "config.py"
    config.write_text(f"DATABASE = {str(tmp_path / 'db.sqlite3')!r}\nSECRET_KEY = 'k'\n")
    monkeypatch.setenv("FLASKTODO_CONFIG", str(config))
    health = create_app().test_client().get("/healthz")
    assert health.status_code == 503 and "schema_migrations" in health.get_json()["error"]
    assert main(["migrate"]) == 0
    assert f"applied: {', '.join(str(v) for v, _d, _s in db.MIGRATIONS)}" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "applied: none needed" in capsys.readouterr().out
    assert create_app().test_client().get("/healthz").status_code == 200


def test_client_address_and_scheme_come_from_the_proxy(client: FlaskClient) -> None:
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    health = get(client, "/healthz", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert health.get_json()["client"] == "203.0.113.9"
    assert health.get_json()["scheme"] == "https"


def test_spoofed_forwarded_for_is_not_trusted_beyond_one_hop(client: FlaskClient) -> None:
    # nginx appends the real address; a client-sent value stays to its left and is ignored.
    headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    health = get(client, "/healthz", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert health.get_json()["client"] == "203.0.113.9"


def test_healthz_reports_version_and_database_failure(tmp_path: Path) -> None:
    ok = migrated({"DATABASE": str(tmp_path / "db.sqlite3"), "SECRET_KEY": "k"}).test_client()
    assert ok.get("/healthz").get_json()["status"] == "ok"
    broken = create_app({"DATABASE": str(tmp_path / "missing/dir/db.sqlite3"), "SECRET_KEY": "k"})
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "error"
    page = broken.test_client().get("/api/items", base_url=BASE)
    assert page.status_code == 503, "a database away is a 503 on every page, never a 500"
    assert page.get_json() == {"error": "service unavailable"}


def test_the_session_cookie_is_the_apps_own_and_kept_from_scripts(client: FlaskClient) -> None:
    cookie = get(client, "/").headers["Set-Cookie"]
    assert cookie.startswith("flasktodo_session=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", f"Path={PREFIX}"):
        assert attribute in cookie.split("; "), cookie


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"},
                                     {"Origin": "null"},
                                     {"Referer": "https://evil.example/page"}])
def test_a_foreign_page_cannot_change_anything(client: FlaskClient, headers: dict) -> None:
    """What a browser sends when another site's page posts here: the victim's cookies, and
    that site's Origin (or Referer). Nothing is created, completed or deleted."""
    created = client.post("/api/items", json={"title": "mine"}, base_url=BASE).get_json()
    item = created["id"]
    form = {"csrf_token": token(client), "title": "theirs"}
    for path, data in ((f"/items/{item}/done", form), (f"/items/{item}/delete", form),
                       ("/items", form)):
        response = client.post(path, base_url=BASE, data=data, headers=headers)
        assert response.status_code == 403, path
        assert "cross-site request refused" in response.get_data(as_text=True)
    assert client.delete(f"/api/items/{item}", base_url=BASE, headers=headers).status_code == 403
    assert client.post("/api/items", json={"title": "theirs"}, base_url=BASE,
                       headers=headers).status_code == 403
    items = get(client, "/api/items").get_json()["items"]
    assert [(i["title"], i["done"]) for i in items] == [("mine", False)]


def test_a_form_post_needs_the_sessions_token(client: FlaskClient) -> None:
    same_site = {"Origin": "https://todo.test"}
    for data in ({"title": "x"}, {"title": "x", "csrf_token": "guessed"}):
        response = client.post("/items", base_url=BASE, data=data, headers=same_site)
        assert response.status_code == 403
        assert "the form has expired" in response.get_data(as_text=True)
    assert post(client, "/items", data={"title": "x"}).status_code == 302


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", f"/api/items/{2**63}", None, 404),
    ("GET", f"/api/items/{10**40}", None, 404),
    # werkzeug's router answers 405 here (the path matches no PATCH rule): a 4xx all the same
    ("PATCH", f"/api/items/{2**64}", b'{"done": true}', 405),
    ("POST", "/api/items", b"[1, 2]", 400),
    ("POST", "/api/items", b'"a string"', 400),
    ("POST", "/api/items", b"not json", 400),
    ("POST", "/api/items", b'{"title": "\\ud800"}', 400),
    ("POST", "/api/items", b'{"title": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    ("POST", "/api/items", b'{"title": 42}', 400),
    ("POST", "/api/items", b'{"title": ["a"]}', 400),
    ("PATCH", "/api/items/1", b'[true]', 400),
    ("POST", "/api/items", b'{"title": "' + b"x" * 70_000 + b'"}', 413),
])
def test_every_bad_request_gets_a_4xx_with_a_short_reason(client: FlaskClient, method: str,
                                                         path: str, body: bytes | None,
                                                         status: int) -> None:
    client.post("/api/items", json={"title": "one"}, base_url=BASE)
    response = client.open(path, method=method, base_url=BASE, data=body,
                           content_type="application/json")
    assert response.status_code == status, response.get_data(as_text=True)[:200]
    reason = response.get_json()["error"]
    assert 0 < len(reason) < 100 and "Traceback" not in reason
    titles = [item["title"] for item in get(client, "/api/items").get_json()["items"]]
    assert titles == ["one"], "nothing stored, least of all a repr"


def test_an_unexpected_failure_says_nothing_of_its_insides(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite3").write_text("not a database, and no error the app expects\n")
    app = create_app({"DATABASE": str(tmp_path / "db.sqlite3"), "SECRET_KEY": "k"})
    response = app.test_client().get("/api/items", base_url=BASE)
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}
