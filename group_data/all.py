# Defaults for every host. staging.py and production.py override only what differs;
# wsgistack/settings.py checks every key before any host is touched.

# Host names nginx answers to (server_name); the first one is used in URLs.
server_names = ["flasktodo.test"]
# Name of the nginx site file in /etc/nginx/sites-available/.
site_name = "wsgistack"
# Port nginx listens on for HTTP, IPv4 and IPv6: it only redirects to HTTPS.
http_port = 80
# Port nginx serves HTTPS on, IPv4 and IPv6 (TLS 1.2 and 1.3, Mozilla "intermediate").
https_port = 443
# The certificate and key files on the controller. None: the pair kept in
# <secrets_dir>/<group>/tls/<site_name>.crt and .key, made self-signed once if missing and
# generate_secrets is on (never in production).
tls_certificate = None
# The certificate's private key (uploaded 0600, root only). Set both or neither.
tls_certificate_key = None
# Send Strict-Transport-Security (browsers then refuse plain HTTP for hsts_max_age).
hsts = False
# Seconds browsers remember HSTS (two years).
hsts_max_age = 63072000
# Largest request body nginx accepts (client_max_body_size).
client_max_body_size = "1m"
# The Content-Security-Policy header on every answer: what pages may load and from where.
content_security_policy = ("default-src 'self'; frame-ancestors 'none'; base-uri 'none';"
                           " form-action 'self'; object-src 'none'")
# Who else may ask an app's health path, if it has one of its own (e.g. /healthz, which
# tells the version): a load balancer's addresses or networks. The host itself always may.
health_check_from = []
# How long browsers may cache static files (nginx `expires`).
static_expires = "7d"

# gunicorn worker processes per app (an app entry may set its own "workers").
gunicorn_workers = 2
# Seconds a worker may spend on one request before gunicorn kills it.
gunicorn_timeout = 30
# Seconds workers get to finish in-flight requests on stop or reload.
gunicorn_graceful_timeout = 30

# Size at which supervisor rotates an app's stdout and stderr logs.
log_max_bytes = "10MB"
# How many rotated logs supervisor keeps of each.
log_backups = 5

# Hosts of a group that go live at a time; each batch must pass its health checks before
# the next one starts, and the first failure stops the rollout.
rollout_batch_size = 1
# Seconds a host's health checks wait for a healthy answer before failing the host.
health_timeout = 30
# Releases kept in /opt/<app>/releases/ (the live one always), for rollback.py.
keep_releases = 5
# SQLite backups kept in /var/lib/<app>/backups/, one taken before each release switch.
keep_backups = 5

# On the controller: where app secrets are read from, <dir>/<group>/<app>.<name>.
# The variable <GROUP>_<APP>_SECRET_KEY (e.g. PRODUCTION_FLASKTODO_SECRET_KEY) comes first.
secrets_dir = "~/.config/wsgistack/secrets"
# Generate a missing secret once and keep it in secrets_dir (never in production).
generate_secrets = True

# The WSGI apps on each host (README: "Deploying your own app"; apps/examples.py has a
# Django project and an app from PyPI). Keys: name (unix user, supervisor program,
# /opt/<name>); source (the app's dir, any layout, built into the wheelhouse) or package (a
# pinned PyPI requirement, "httpbin==0.10.4"); wsgi (gunicorn's app: module:name or
# module:factory(literal arguments)); prefix (URL path); port (gunicorn, on 127.0.0.1).
# Optionally: config (the template of its own config file) with config_env (the variable
# naming that file to the app); its own workers, max_body_size and timeout (by default
# gunicorn_workers, client_max_body_size and gunicorn_timeout); env ({"NAME": "value"}:
# the app's variables); secret_env (["NAME"]: variables whose values are secrets, read from
# $<GROUP>_<APP>_<NAME> or <secrets_dir>/<group>/<app>.<name>); health_path (what the
# health checks ask under the prefix, default "/": healthy is any answer below 500; a JSON
# object's "status" must be "ok" and its "version", if any, the one deployed; a path of its
# own is closed to all but the host and health_check_from); build_commands
# ([["django-admin", "collectstatic", "--noinput"]]: run once per installed release, as the
# app's user, writing into $WSGISTACK_BUILD_DIR, which becomes the release's build/);
# release_commands ([["django-admin", "migrate"]]: run, as the app's user with the new
# release, its config and environment, after the database backup and before a new release
# goes live; a failure switches nothing); static ({"/static/": "package/static"}: URL paths
# under the prefix that nginx serves itself, from dirs in the release's installed packages
# or, as "build/...", in what its build commands made). To remove an app:
# {"name": ..., "state": "absent"} stops it and removes its program, site locations, code
# and config, keeping its data in /var/lib/<name>; add "purge": True to remove the data and
# its user too.
apps = [
    {
        "name": "flasktodo",
        "source": "apps/flasktodo",
        "wsgi": "flasktodo.wsgi:app",
        "config": "apps/flasktodo/config.py.j2",
        "config_env": "FLASKTODO_CONFIG",
        "secret_env": ["SECRET_KEY"],
        "prefix": "/flasktodo",
        "port": 8004,
        "health_path": "/healthz",
        "static": {"/static/": "flasktodo/static"},
    },
]
