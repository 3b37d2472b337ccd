"""The hosts, by group: `staging` and `production` (each environment's web hosts and its
database and backup hosts, if it has them), `databases` (the database hosts) and `backups`
(the backup hosts).

By default these are the local sandbox hosts (`python -m sandbox up`). To deploy to real
servers, write a targets file (see README) and run
    WSGISTACK_TARGETS=targets.toml pyinfra inventory.py deploy.py --limit staging
Group settings live in group_data/; nothing here needs editing.
"""

from wsgistack.config.preflight import check_before_connecting
from wsgistack.config.targets import load_targets
from wsgistack.engine.changes import say_what_failed

say_what_failed()  # a failed step closes with "failed", not pyinfra's "executed 0 commands"

_targets = load_targets()
# Every setting of the groups this run aims at, checked before any host is connected to.
check_before_connecting(_targets)

staging = _targets["staging"]
production = _targets["production"]
databases = _targets["databases"]
backups = _targets["backups"]
