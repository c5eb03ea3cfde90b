#!/usr/bin/env bash
# `make bench`: measures Wharf (embedded and scaled) against pypiserver on this machine and
# regenerates docs/benchmarks.md and bench/results/latest.json.
#
# Installs what it needs: wrk (Debian package), the peer's venv bench/.venv
# (bench/requirements.txt); builds the release binaries; makes the corpus once (cached in
# bench/.corpus/); starts PostgreSQL and NATS (scripts/ensure-services.sh); then runs
# bench/run.py. Settings (environment): BENCH_READ_SECONDS (20), BENCH_DOWNLOAD_SECONDS (10),
# BENCH_MINT_REQUESTS (6000), BENCH_SEED (the corpus seed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
CARGO=${CARGO:-cargo}

say() { printf 'bench: %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null; then
    say "installing wrk"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null || { say "taskset (util-linux) is required"; exit 1; }

if [ ! -f bench/.venv/.installed ] || [ bench/requirements.txt -nt bench/.venv/.installed ]; then
    say "installing the peer (bench/.venv)"
    "$PYTHON" -m venv bench/.venv
    bench/.venv/bin/python -m pip install --disable-pip-version-check --quiet -r bench/requirements.txt
    touch bench/.venv/.installed
fi

say "building the release binaries"
"$CARGO" build --release -p wharf -p wharf-bench

say "corpus (bench/.corpus, made once per seed)"
./target/release/wharf-bench corpus --dir bench/.corpus --huge ${BENCH_SEED:+--seed "$BENCH_SEED"} >&2

./scripts/ensure-services.sh >&2

exec "$PYTHON" bench/run.py
