"""Templates render from the settings, strictly, into what the operator expects on the host."""

from __future__ import annotations

import configparser
import dataclasses
import inspect
import os
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest

from tests.unit.test_settings import group_data, production_data
from wsgistack.components import nginx
from wsgistack.components.app import config_files
from wsgistack.components.supervisor import herder_digest
from wsgistack.config.environment import Environment, Member
from wsgistack.config.settings import Settings, SettingsError, load_settings
from wsgistack.engine.programs import HERDER
from wsgistack.onhost.golive.layout import AppPaths
from wsgistack.paths import REPO_ROOT, TEMPLATES

NO_DATABASE = Environment("production", ())  # its web hosts keep their own SQLite
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                         undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(production_data(tmp_path), "production")


def production_data_for(settings: Settings) -> dict:
    """The production data `settings` was loaded from (its TLS pair included)."""
    return {**group_data("production"), "tls_certificate": str(settings.tls_certificate),
            "tls_certificate_key": str(settings.tls_certificate_key)}


def render(name: str, **context) -> str:
    return ENV.get_template(name).render(**context)


def render_app_file(name: str, settings: Settings, **context) -> str:
    """Render a per-app template for the first app, as the deploy does."""
    app = settings.apps[0]
    return render(name, app=app, paths=AppPaths(app.name), settings=settings, **context)


def python_values(text: str, filename: str) -> dict:
    values: dict = {"__file__": filename}
    exec(compile(text, filename, "exec"), values)
    return values


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """An env file beside a gunicorn.conf.py in tmp_path, as the deploy writes it."""
    env = tmp_path / "env"
    env.write_text("# comment\nWSGISTACK_SERVER_NAMES=\"flasktodo.test\"\n")
    return env


def test_every_template_says_it_is_managed(settings: Settings) -> None:
    for template in TEMPLATES.rglob("*.j2"):
        head = template.read_text().splitlines()[:3]
        assert any("Managed by wsgistack" in line for line in head), template


def test_flasktodos_own_config_is_python_with_debug_off(settings: Settings) -> None:
    """FlaskTODO's config template (its entry's `config`), rendered as the deploy does,
    with its secrets."""
    [config, *_rest] = config_files(settings, settings.apps[0], AppPaths("flasktodo"),
                                    {"SECRET_KEY": 'quote"d'}, NO_DATABASE)
    assert config.path == "/etc/flasktodo/config.py.next"
    values = python_values(config.content.decode(), "config.py")
    assert values["DEBUG"] is False
    assert values["SECRET_KEY"] == 'quote"d'
    assert values["DATABASE"] == "/var/lib/flasktodo/flasktodo.sqlite3"


def test_gunicorn_binds_loopback_with_workers_and_pidfile(settings: Settings,
                                                         env_file: Path) -> None:
    values = python_values(render_app_file("etc/app/gunicorn.conf.py.j2", settings),
                           str(env_file.with_name("gunicorn.conf.py")))
    assert values["bind"] == ["127.0.0.1:8004"]
    assert values["workers"] == 4
    assert values["pidfile"] == "/run/flasktodo/gunicorn.pid"
    assert values["worker_tmp_dir"] == "/dev/shm"
    assert values["forwarded_allow_ips"] == "127.0.0.1,::1"


def test_gunicorn_tells_a_reload_when_each_worker_is_ready(settings: Settings, tmp_path: Path,
                                                          env_file: Path) -> None:
    text = render_app_file("etc/app/gunicorn.conf.py.j2", settings)
    values = python_values(text.replace("/run/flasktodo", str(tmp_path)),
                           str(env_file.with_name("gunicorn.conf.py")))
    assert values["control_socket_disable"] is True
    for pid in (101, 102):
        values["post_worker_init"](SimpleNamespace(pid=pid, ppid=100))
    assert (tmp_path / "ready.100").read_text().split() == ["101", "102"]


def test_supervisor_program(settings: Settings) -> None:
    text = render_app_file("etc/supervisor/conf.d/app.conf.j2", settings, herder=HERDER,
                           herder_digest=herder_digest())
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read_string(text)
    program = parser["program:flasktodo"]
    assert program["command"] == (
        "/usr/bin/python3 /usr/local/lib/wsgistack/gunicorn-herder run"
        " --pidfile /run/flasktodo/gunicorn.pid -- /opt/flasktodo/current/venv/bin/python"
        " /opt/flasktodo/current/venv/bin/gunicorn --config /etc/flasktodo/gunicorn.conf.py")
    assert f"herder sha256: {herder_digest()}" in text, "a new herder restarts the program"
    assert program["user"] == "flasktodo"
    assert program["autostart"] == program["autorestart"] == "true"
    assert program["stopasgroup"] == "true"
    assert int(program["stopwaitsecs"]) > settings.gunicorn_graceful_timeout
    assert 'FLASKTODO_CONFIG="/etc/flasktodo/config.py"' in program["environment"]
    assert 'SCRIPT_NAME="/flasktodo"' in program["environment"]
    assert program["stdout_logfile_maxbytes"] == program["stderr_logfile_maxbytes"] == "10MB"


def render_site(settings: Settings) -> str:
    """The candidate site exactly as the deploy renders it."""
    return nginx.candidates(settings, NO_DATABASE)[0].content.decode()


def test_nginx_site(settings: Settings) -> None:
    text = render_site(settings)
    assert "listen 443 ssl;" in text and "listen [::]:443 ssl;" in text
    assert "server_name flasktodo.test www.flasktodo.test;" in text
    assert "return 301 https://$host$request_uri;" in text
    assert "location ^~ /flasktodo/static/ {\n        alias /opt/flasktodo/current/static/;" \
        in text
    assert "proxy_pass http://127.0.0.1:8004;" in text
    for header in ("Host $host", "X-Real-IP $remote_addr",
                   "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header};" in text
    assert "python3." not in text, "no Python version in the static path"
    assert text.count("{") == text.count("}")


def test_nginx_site_is_hardened(settings: Settings, tmp_path: Path) -> None:
    text = render_site(settings)
    assert "ssl_certificate /etc/ssl/wsgistack/wsgistack.crt;" in text
    assert "ssl_certificate_key /etc/ssl/wsgistack/private/wsgistack.key;" in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text and "ssl_session_tickets off;" in text
    assert "ssl_session_cache shared:" in text
    assert text.count("server_tokens off;") == 3, "every server block"
    assert "listen 80 default_server;" in text and "return 444;" in text
    assert "ssl_reject_handshake on;" in text
    for header in ("X-Content-Type-Options nosniff", "X-Frame-Options DENY",
                   "Referrer-Policy strict-origin-when-cross-origin",
                   'Strict-Transport-Security "max-age=63072000"',
                   f'Content-Security-Policy "{settings.content_security_policy}"'):
        assert f"add_header {header} always;" in text
    directives = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    assert sum(d.startswith("add_header") for d in directives) == 5, \
        "no location adds headers of its own, which would drop the server's"
    assert f"proxy_read_timeout {settings.gunicorn_timeout + 5}s;" in text
    assert "client_max_body_size 1m;" in text
    staging = load_settings({**group_data("staging"), "secrets_dir": str(tmp_path)}, "staging")
    assert "Strict-Transport-Security" not in render_site(staging)


def test_nginx_site_shows_nothing_it_need_not(settings: Settings) -> None:
    text = render_site(settings)
    assert "location / {\n        return 404;\n    }" in text, "no welcome page at the top"
    healthz = text.split("location = /flasktodo/healthz {", 1)[1].split("\n    }", 1)[0]
    assert healthz.split("deny all;")[0].split() == ["allow", "127.0.0.1;", "allow", "::1;"]
    widened = load_settings({**production_data_for(settings), "health_check_from":
                             ["10.0.0.0/8"]}, "production")
    assert "allow 10.0.0.0/8;\n        deny all;" in render_site(widened)
    for header in ("X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix",
                   "X-Forwarded-Ssl", "X-Forwarded-Protocol", "Forwarded"):
        assert text.count(f'proxy_set_header {header} "";') == 2, header
    assert text.count('if ($request_uri !~ "^/flasktodo/") {\n            return 400;') == 2


def test_gunicorn_believes_one_scheme_header_and_runs_from_the_release(
        settings: Settings, env_file: Path) -> None:
    values = python_values(render_app_file("etc/app/gunicorn.conf.py.j2", settings),
                           str(env_file.with_name("gunicorn.conf.py")))
    assert values["secure_scheme_headers"] == {"X-FORWARDED-PROTO": "https"}
    assert values["chdir"] == "/opt/flasktodo", "never the app-writable data dir"


def test_the_environment_reaches_gunicorn_from_the_env_file_beside_its_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The env file as the deploy renders it (values with quotes, newlines, '=' and
    markup), loaded by gunicorn.conf.py from beside it: staged (.new) beside staged."""
    data = {**group_data("staging"), "secrets_dir": str(tmp_path)}
    data["apps"] = [{**data["apps"][0], "env": {"GREETING": 'say "hi"\n= <b>&'},
                     "secret_env": ["API_TOKEN"]}]
    settings = load_settings(data, "staging")
    app_entry = settings.apps[0]
    token = "t0ken-" + "abcdefghijklmnopqrstuvwxyz0123456789"
    files = config_files(settings, app_entry, AppPaths(app_entry.name),
                         {"SECRET_KEY": "k" * 40, "API_TOKEN": token}, NO_DATABASE)
    env = next(file for file in files if file.path.endswith("/env.next"))
    assert env.secret and env.mode == "640" and env.group == app_entry.name
    (tmp_path / "env.new").write_bytes(env.content)
    for name in ("GREETING", "API_TOKEN", "WSGISTACK_SERVER_NAMES"):
        monkeypatch.delenv(name, raising=False)
    python_values(render_app_file("etc/app/gunicorn.conf.py.j2", settings),
                  str(tmp_path / "gunicorn.conf.py.new"))
    assert os.environ["GREETING"] == 'say "hi"\n= <b>&'
    assert os.environ["API_TOKEN"] == token
    assert os.environ["WSGISTACK_SERVER_NAMES"] == "staging.flasktodo.test"


def test_only_a_health_path_of_its_own_is_closed_to_the_world(tmp_path: Path) -> None:
    data = {**group_data("staging"), "secrets_dir": str(tmp_path)}
    assert "location = /flasktodo/healthz {" in render_site(load_settings(data, "staging"))
    data["apps"] = [{key: value for key, value in data["apps"][0].items()
                     if key != "health_path"}]
    default = load_settings(data, "staging")
    assert default.apps[0].health_path == "/"
    assert "deny all;" not in render_site(default), "the app's pages stay open"


def test_each_app_has_its_own_limits_in_nginx_and_gunicorn(tmp_path: Path,
                                                           env_file: Path) -> None:
    data = {**group_data("staging"), "secrets_dir": str(tmp_path)}
    data["apps"] = [{**data["apps"][0], "max_body_size": "20m", "timeout": 120}]
    settings = load_settings(data, "staging")
    site = render_site(settings)
    assert "client_max_body_size 1m;" in site, "the site's own"
    assert site.count("client_max_body_size 20m;") == 2, "the app's locations"
    assert site.count("proxy_read_timeout 125s;") == 2
    values = python_values(render_app_file("etc/app/gunicorn.conf.py.j2", settings),
                           str(env_file.with_name("gunicorn.conf.py")))
    assert values["timeout"] == 120


def test_each_static_dir_is_its_own_location_from_the_live_release(tmp_path: Path) -> None:
    data = {**group_data("staging"), "secrets_dir": str(tmp_path)}
    data["apps"] = [{**data["apps"][0], "static": {"/static/": "flasktodo/static",
                                                   "/media/": "flasktodo/media"}}]
    site = render_site(load_settings(data, "staging"))
    assert "location ^~ /flasktodo/static/ {\n        alias /opt/flasktodo/current/static/;" \
        in site
    assert "location ^~ /flasktodo/media/ {\n        alias /opt/flasktodo/current/static-1/;" \
        in site
    data["apps"] = [{key: value for key, value in data["apps"][0].items() if key != "static"}]
    assert "alias" not in render_site(load_settings(data, "staging")), "no static: the app's"


def test_a_config_template_asking_a_secret_the_app_lacks_stops_with_one_line(
        settings: Settings) -> None:
    app = dataclasses.replace(settings.apps[0], secret_env=("API_TOKEN",))
    [config, *_rest] = config_files(settings, app, AppPaths(app.name), {"API_TOKEN": "t" * 40},
                                    NO_DATABASE)
    with pytest.raises(SettingsError) as error:
        _ = config.content
    assert error.value.problems == [f"apps[flasktodo].config: {app.config} uses"
                                    " secrets.SECRET_KEY, which is not in its secret_env"]


def test_acme_challenges_are_answered_on_port_80_for_the_site_names_only(
        tmp_path: Path) -> None:
    data = {**group_data("production"), "tls_mode": "acme", "acme_email": "ops@flasktodo.test"}
    settings = load_settings(data, "production")
    two = Environment("production", (Member("web1", "10.0.0.2"), Member("web2", "fd00::3")))
    text = nginx.candidates(settings, two)[0].content.decode()
    assert "upstream wsgistack_acme_peers {\n    server 10.0.0.2:80;\n    server [fd00::3]:80;\n}" \
        in text, "every web host of the environment, this one too: one site file for all"
    plain = text.split("# Plain HTTP", 1)[1].split("\nserver {", 1)[1].split("\n}\n", 1)[0]
    assert "server_name flasktodo.test www.flasktodo.test;" in plain
    assert "location ^~ /.well-known/acme-challenge/ {\n        root /var/lib/wsgistack/acme;" \
        in plain and "try_files $uri @acme_peers;" in plain
    assert "if ($http_x_wsgistack_acme_peer) {\n            return 404;" in plain, \
        "a request passed on by a peer is never passed on again"
    assert "proxy_set_header X-Wsgistack-Acme-Peer 1;" in plain
    assert "location / {\n        return 301 https://$host$request_uri;" in plain
    assert text.count("acme-challenge") == 1, "not in the default server, not on HTTPS"
    alone = nginx.candidates(settings, Environment("production", (Member("web1", "10.0.0.2"),)))
    single = alone[0].content.decode()
    assert "try_files $uri =404;" in single and "upstream" not in single
    assert len(alone) == 1, "no TLS pair uploaded: certbot makes it on the host"
    files = render_site(load_settings(production_data_for(load_settings(
        production_data(tmp_path), "production")), "production"))
    assert "acme-challenge" not in files


def test_the_readme_names_every_path_a_config_template_sees() -> None:
    """`paths` in an app's config template is golive's AppPaths: the README lists each of
    its places, so a new one is documented the day it is declared."""
    readme = (REPO_ROOT / "README.md").read_text()
    places = [name for name, value in inspect.getmembers(AppPaths)
              if not name.startswith("_") and name not in ("leftovers", "purged")
              and (isinstance(value, property) or callable(value))]
    assert [name for name in places if f"`paths.{name}" not in readme] == []
