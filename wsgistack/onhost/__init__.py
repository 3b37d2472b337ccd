"""Programs wsgistack installs on the hosts: standard library only, run by their python3."""
