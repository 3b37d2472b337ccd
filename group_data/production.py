# Production: only what differs from all.py.

server_names = ["flasktodo.test", "www.flasktodo.test"]
gunicorn_workers = 4
# Production secrets are provided by the operator (environment or secrets_dir), never made up.
generate_secrets = False
# Browsers must use HTTPS for this site.
hsts = True
