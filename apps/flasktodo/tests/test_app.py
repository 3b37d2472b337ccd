"""FlaskTODO behaviour through Flask's test client, mounted under a prefix like in production."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flasktodo import create_app

PREFIX = "/flasktodo"
BASE = f"http://todo.test{PREFIX}"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app({"DATABASE": str(tmp_path / "todo.sqlite3"), "SECRET_KEY": "test"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def get(client: FlaskClient, path: str, **kwargs):
    return client.get(path, base_url=BASE, **kwargs)


def post(client: FlaskClient, path: str, **kwargs):
    return client.post(path, base_url=BASE, **kwargs)


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
    create_app(config).test_client().post("/api/items", json={"title": "kept"})
    items = create_app(config).test_client().get("/api/items").get_json()["items"]
    assert [item["title"] for item in items] == ["kept"]


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
    ok = create_app({"DATABASE": str(tmp_path / "db.sqlite3"), "SECRET_KEY": "k"}).test_client()
    assert ok.get("/healthz").get_json()["status"] == "ok"
    broken = create_app({"DATABASE": str(tmp_path / "missing/dir/db.sqlite3"), "SECRET_KEY": "k"})
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "error"
