"""wsgistack: pyinfra deploys that turn a bare Debian host into nginx -> gunicorn -> a WSGI app,
with supervisor keeping gunicorn alive. deploy.py calls these; group_data/ configures them."""
