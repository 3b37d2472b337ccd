"""The WSGI entry point gunicorn loads: `flasktodo.wsgi:app`."""

from flasktodo import create_app

app = create_app()
