# One entry point for a fresh machine: `make test` creates .venv, installs
# gitreg with its test extras, then runs lint, types and the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: dev test lint demo clean system-deps

# ssh-keygen, sshd, gpg, openssl, git from Debian when missing (no-op otherwise).
system-deps:
	./scripts/system-deps

$(BIN)/gitreg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

dev: system-deps $(BIN)/gitreg

lint: dev
	$(BIN)/ruff check gitreg hooks tests benchmarks contrib
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 -q

# The README's one command: a registry, two replicas and a site on 127.0.0.1.
demo: dev
	$(BIN)/python scripts/demo $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
