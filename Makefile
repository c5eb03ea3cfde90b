# Wharf: a PyPI-compatible package registry.
# `make run` starts the registry with embedded defaults; `make test` runs every test.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := tests/.venv
LISTEN ?= 127.0.0.1:8080
DATA   ?= ./wharf-data

.DEFAULT_GOAL := help
.PHONY: help run build test lint fmt fmt-check clippy venv clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## Build and run the registry (embedded: SQLite, local files, in-process bus)
	$(CARGO) build --release -p wharf
	./target/release/wharf serve --listen $(LISTEN) --data-dir $(DATA)

build: ## Build target/release/wharf
	$(CARGO) build --release -p wharf

venv: $(VENV)/.installed ## Install the real Python clients the tests drive (tests/.venv)

$(VENV)/.installed: tests/python/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet -r tests/python/requirements.txt
	touch $@

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt-check clippy ## Check formatting and clippy (warnings are errors)

# The end-to-end tests run the debug binary, which shares its build with `cargo test`.
test: venv lint ## Lint, then run every unit, integration and end-to-end test
	$(CARGO) build -p wharf
	WHARF_BIN=$(CURDIR)/target/debug/wharf $(CARGO) test --workspace

clean: ## Remove build output and the test venv
	$(CARGO) clean
	rm -rf $(VENV)
