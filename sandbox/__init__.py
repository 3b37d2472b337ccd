"""Local sandbox hosts: bare Debian servers booted with systemd under systemd-nspawn.

Each host has its own network namespace, address, sshd and disk (an overlay on a cached
base image), and is reached over SSH exactly like a real server. `python -m sandbox --help`
lists the commands.
"""
