# Wharf: a PyPI-compatible package registry.
# `make run` starts the registry with embedded defaults; `make test` runs every test.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := tests/.venv
DEPLOY_VENV := deploy/.venv
LISTEN ?= 127.0.0.1:8080
DATA   ?= ./wharf-data

.DEFAULT_GOAL := help
.PHONY: help run build test lint deny fmt fmt-check clippy venv services clean k8s-lint cluster conformance bench fuzz

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

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

services: ## Start (or install) PostgreSQL and NATS for the scaled-mode tests
	./scripts/ensure-services.sh

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt-check clippy deny k8s-lint ## Check formatting, clippy (warnings are errors), deny.toml and deploy/k8s

# cargo-deny, pinned, installed once into ~/.cargo/bin. Advisories are left out: they need a
# clone of the advisory-db from github.com (see deny.toml).
CARGO_DENY_VERSION := 0.20.2

deny: ## Check licenses, sources and duplicate crates against deny.toml
	@cargo-deny --version 2>/dev/null | grep -qx 'cargo-deny $(CARGO_DENY_VERSION)' || \
		$(CARGO) install cargo-deny --locked --version $(CARGO_DENY_VERSION)
	$(CARGO) deny check licenses bans sources

k8s-lint: $(DEPLOY_VENV)/.installed ## Validate deploy/k8s against the Kubernetes schemas (offline)
	$(DEPLOY_VENV)/bin/python deploy/k8s-lint.py deploy/k8s

$(DEPLOY_VENV)/.installed: deploy/requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --disable-pip-version-check --quiet -r deploy/requirements.txt
	touch $@

cluster: build venv ## Run the scaled topology as local processes (PostgreSQL, NATS, moto S3)
	./scripts/cluster.sh

bench: ## Measure Wharf against pypiserver; rewrites docs/benchmarks.md (about 10 minutes)
	./scripts/bench.sh

# Fuzzing: cargo-fuzz (pinned) on the nightly toolchain, one target at a time, one job each.
# FUZZ_SECONDS bounds each target's run; FUZZ_RUNS stops a target earlier once it has run
# that many inputs (0: no cap); FUZZ_TARGETS picks targets. A crash fails the target (libFuzzer
# exits non-zero) and leaves the input in fuzz/artifacts/<target>/.
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?= 0
FUZZ_TARGETS ?= filename name_version metadata upload_form multipart macaroon jwt wheel sdist
# Crates here forbid unsafe code: AddressSanitizer would only watch dependencies, at half the
# speed, so the targets run uninstrumented for memory errors, with debug assertions on.
FUZZ_FLAGS   := --sanitizer none --debug-assertions

fuzz: ## Run every fuzz target for FUZZ_SECONDS (default 60) each; fails on a crash
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	cd fuzz && $(CARGO) +nightly fuzz build $(FUZZ_FLAGS)
	@set -e; for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target; \
		cp -n fuzz/seeds/$$target/* fuzz/corpus/$$target/ 2>/dev/null || true; \
		echo "== fuzz $$target ($(FUZZ_SECONDS)s)"; \
		(cd fuzz && $(CARGO) +nightly fuzz run $(FUZZ_FLAGS) $$target corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -runs=$(if $(filter 0,$(FUZZ_RUNS)),-1,$(FUZZ_RUNS)) \
			-rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1); \
	done

# The end-to-end tests run the debug binary, which shares its build with `cargo test`.
test: venv services lint ## Lint, then run every unit, integration and end-to-end test
	$(CARGO) build -p wharf
	WHARF_BIN=$(CURDIR)/target/debug/wharf $(CARGO) test --workspace

clean: ## Remove build output and the test venv
	$(CARGO) clean
	rm -rf $(VENV) $(DEPLOY_VENV)

conformance: venv services ## Run the suites docs/conformance.md maps PyPI's rules to
	$(CARGO) build -p wharf
	$(CARGO) test -p wharf-core -p wharf-archive -p wharf-macaroon -p wharf-gateway -p wharf-verifier
	$(CARGO) test -p wharf-index-conformance --test index_rules
	WHARF_BIN=$(CURDIR)/target/debug/wharf $(CARGO) test -p wharf-e2e --test conformance --test http_api --test clients
