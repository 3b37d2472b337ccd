# Staging: only what differs from all.py.

server_names = ["staging.flasktodo.test"]
