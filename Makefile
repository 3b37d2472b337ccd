# The two commands of the README, and their parts.
#   make demo   sandbox hosts up, deploy staging, print the URL
#   make test   lint, unit and integration tests (integration needs root)
#   make bench  benchmarks on sandbox hosts (root, ~8 min), written to docs/performance.md
#   make docs   the README's settings tables, from wsgistack/config/schema.py

VENV     := .venv
BIN      := $(VENV)/bin
PYTHON   ?= python3
# Debian packages the controller needs: the sandbox (debootstrap, nspawn, nftables, ip, ssh),
# python3-venv for the project's own venv, and shellcheck for `make lint`.
SYSTEM_PACKAGES := debootstrap systemd-container nftables iproute2 openssh-client \
                   python3-venv curl openssl util-linux shellcheck

.PHONY: demo test lint unit integration bench docs system-deps venv down clean

# The deploy's closing summary prints each host's URL and health.
demo: venv system-deps
	$(BIN)/python -m sandbox up
	$(BIN)/pyinfra inventory.py deploy.py --limit staging -y

# Test runners side by side (pytest-xdist): each integration module, with its own sandbox,
# runs whole in one of them; the hosts mostly wait on the network, so more runners than CPUs.
TEST_RUNNERS ?= 3
PYTEST_PARALLEL = -n $(TEST_RUNNERS) --dist loadgroup

test: lint venv system-deps
	$(BIN)/pytest $(PYTEST_PARALLEL)

# ruff for the Python; shellcheck for every shell command the deploy still sends to hosts.
lint: venv system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m tests.shellcheck

unit: venv
	$(BIN)/pytest -m "not integration"

integration: venv system-deps
	$(BIN)/pytest $(PYTEST_PARALLEL) -m integration

# The package's bytecode compiled first, as an operator's first run leaves it (a shell with
# PYTHONDONTWRITEBYTECODE set would otherwise time Python compiling it on every run).
bench: venv system-deps
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m compileall -q wsgistack
	$(BIN)/python -m bench

# The README's settings tables, made from wsgistack/config/schema.py.
docs: venv
	$(BIN)/python -m wsgistack.config.schema

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml apps/flasktodo/pyproject.toml
	@[ -x $(BIN)/python ] || { $(PYTHON) -m venv $(VENV) || { $(MAKE) system-deps && $(PYTHON) -m venv $(VENV); }; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' -e apps/flasktodo
	touch $@

down: venv
	$(BIN)/python -m sandbox down

clean: down
	rm -rf $(VENV) build
