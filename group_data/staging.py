# Staging: only what differs from all.py.

server_names = ["staging.flasktodo.test"]
# With tls_mode = "acme": Let's Encrypt's staging CA (its certificates are not trusted by
# browsers, and its rate limits are far higher), so staging never spends production's.
acme_directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
