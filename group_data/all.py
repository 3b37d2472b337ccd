# Settings for every host; staging.py and production.py set only what differs.
#
# Every other setting has a default, declared with its check and meaning in
# wsgistack/config/schema.py and listed in README.md ("Settings"): set it here to change it for
# every host. A key that is no setting stops the run before any host is touched.

# Host names nginx answers to (server_name); the first one is used in URLs.
server_names = ["flasktodo.test"]

# The WSGI apps on each host, one entry each: README.md, "Settings" lists the keys an entry
# may have, and "Deploying your own app" tells how (apps/examples.py has a Django project
# and an app from PyPI). To remove an app: {"name": ..., "state": "absent"}.
apps = [
    {
        "name": "flasktodo",
        "source": "apps/flasktodo",
        "wsgi": "flasktodo.wsgi:app",
        "config": "apps/flasktodo/config.py.j2",
        "config_env": "FLASKTODO_CONFIG",
        # Where the environment has a database host: the URL of its PostgreSQL database.
        "database_env": "DATABASE_URL",
        "secret_env": ["SECRET_KEY"],
        "prefix": "/flasktodo",
        "port": 8004,
        "health_path": "/healthz",
        # Its schema, before a new release goes live (README: "Releases").
        "release_commands": [["flasktodo", "migrate"]],
        "static": {"/static/": "flasktodo/static"},
    },
]
