"""App entries for apps nobody here wrote, as an operator adds them to `apps` in group_data:
the README's examples, deployed side by side with FlaskTODO by
tests/integration/test_any_app.py."""

# A Django project exactly as `django-admin startproject mysite` laid it out, with its
# settings reading the environment (the lines marked [wsgistack] in mysite/settings.py).
DJANGO = {
    "name": "mysite",
    "source": "apps/mysite",
    "wsgi": "mysite.wsgi:application",
    "prefix": "/mysite",
    "port": 8006,
    "env": {"DJANGO_SETTINGS_MODULE": "mysite.settings",
            "DJANGO_DATABASE": "/var/lib/mysite/mysite.sqlite3"},
    "secret_env": ["DJANGO_SECRET_KEY"],
    "build_commands": [["django-admin", "collectstatic", "--noinput"]],
    "release_commands": [["django-admin", "migrate", "--noinput"]],
    "static": {"/static/": "build/static"},
}

# A WSGI app straight from PyPI: no project dir, no wrapper.
HTTPBIN = {
    "name": "httpbin",
    "package": "httpbin==0.10.4",
    "wsgi": "httpbin:app",
    "prefix": "/httpbin",
    "port": 8010,
}
