#!/usr/bin/env bash
# Runs Wharf's scaled-mode topology as local processes, for hosts without a container engine:
# the same services as deploy/compose.yaml (1 verifier, 2 gateways, 2 storage workers) against
# the local PostgreSQL and NATS JetStream (started by scripts/ensure-services.sh) and a local
# moto S3 server. Everything starts fresh: a recreated database, new JetStream streams and an
# empty (in-memory) S3 bucket. Ctrl-C stops every process gracefully.
#
#   make cluster                                 # build, then run until Ctrl-C
#   CLUSTER_EXIT_AFTER_READY=1 make cluster      # stop everything once all are ready (smoke test)
#
# Settings (environment): WHARF_BIN (default target/release/wharf), CLUSTER_LOG_DIR
# (./cluster-logs), CLUSTER_DB (wharf_cluster), CLUSTER_NATS_PREFIX (wharf-cluster),
# CLUSTER_S3_PORT (9000), CLUSTER_VERIFIER_PORT (8081), CLUSTER_GATEWAY_PORTS ("8080 8090"),
# CLUSTER_WORKER_PORTS ("8082 8083"), CLUSTER_READY_TIMEOUT (60 seconds), CLUSTER_STORE (a
# file:///dir URL: the services share that directory instead of the moto S3 server; `make bench`
# uses it so the S3 emulator's cost and memory are not measured as Wharf's).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

WHARF_BIN=${WHARF_BIN:-$ROOT/target/release/wharf}
MOTO_SERVER=${MOTO_SERVER:-$ROOT/tests/.venv/bin/moto_server}
LOG_DIR=${CLUSTER_LOG_DIR:-$ROOT/cluster-logs}
DB_NAME=${CLUSTER_DB:-wharf_cluster}
NATS_PREFIX=${CLUSTER_NATS_PREFIX:-wharf-cluster}
S3_PORT=${CLUSTER_S3_PORT:-9000}
S3_BUCKET=wharf
VERIFIER_PORT=${CLUSTER_VERIFIER_PORT:-8081}
read -r -a GATEWAY_PORTS <<<"${CLUSTER_GATEWAY_PORTS:-8080 8090}"
read -r -a WORKER_PORTS <<<"${CLUSTER_WORKER_PORTS:-8082 8083}"
READY_TIMEOUT=${CLUSTER_READY_TIMEOUT:-60}
EXIT_AFTER_READY=${CLUSTER_EXIT_AFTER_READY:-0}
STORE=${CLUSTER_STORE:-}
PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres NATS_PORT=4222

say() { printf 'cluster: %s\n' "$*"; }
fail() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# HTTP status of a request to 127.0.0.1, without curl: http_status PORT METHOD PATH
http_status() (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nContent-Length: 0\r\n\r\n' "$2" "$3" "$1" >&3
    line=
    IFS= read -r -t 5 line <&3 || true
    read -r _ code _ <<<"$line"
    printf '%s\n' "${code:-000}"
) 2>/dev/null

# ---------------------------------------------------------------------------------------------
# Preconditions
[ -x "$WHARF_BIN" ] || fail "$WHARF_BIN not found: run 'make build' (or 'make cluster', which builds)"
[ -n "$STORE" ] || [ -x "$MOTO_SERVER" ] || fail "$MOTO_SERVER not found: run 'make venv' (moto is in tests/python/requirements.txt)"
command -v psql >/dev/null || fail "psql not found (it comes with PostgreSQL: run scripts/ensure-services.sh)"

[ -n "$STORE" ] && S3_PORT=
for port in $S3_PORT "$VERIFIER_PORT" "${GATEWAY_PORTS[@]}" "${WORKER_PORTS[@]}"; do
    if port_open "$port"; then
        fail "port $port is already in use (another 'make run' or 'make cluster'?); free it or set CLUSTER_*_PORT(S)"
    fi
done

./scripts/ensure-services.sh

mkdir -p "$LOG_DIR"
rm -f "$LOG_DIR"/*.log

# ---------------------------------------------------------------------------------------------
# Process bookkeeping and clean shutdown
NAMES=() PIDS=()
STOPPING=0

start() { # start NAME COMMAND...: runs in the background, output to $LOG_DIR/NAME.log
    local name=$1
    shift
    "$@" >"$LOG_DIR/$name.log" 2>&1 &
    NAMES+=("$name")
    PIDS+=("$!")
}

stop_all() {
    local status=$? i deadline
    [ "$STOPPING" = 1 ] && return
    STOPPING=1
    trap '' INT TERM
    [ "${#PIDS[@]}" -gt 0 ] || exit "$status"
    # In reverse start order: gateways (drain), workers (finish in-flight uploads), the
    # verifier, then the S3 server the workers may still be writing to.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -0 "${PIDS[$i]}" 2>/dev/null || { wait "${PIDS[$i]}" 2>/dev/null || true; continue; }
        say "stopping ${NAMES[$i]}"
        kill -TERM "${PIDS[$i]}" 2>/dev/null || true
        deadline=$((SECONDS + 70))
        while kill -0 "${PIDS[$i]}" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if kill -0 "${PIDS[$i]}" 2>/dev/null; then
            say "${NAMES[$i]} did not stop within 70s; killing it"
            kill -KILL "${PIDS[$i]}" 2>/dev/null || true
        fi
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    say "all stopped (logs in ${LOG_DIR#"$ROOT"/}/)"
    exit "$status"
}
trap stop_all EXIT
INTERRUPTED=0
trap 'INTERRUPTED=1; exit 130' INT
trap 'INTERRUPTED=1; exit 143' TERM

check_alive() {
    local i
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            say "${NAMES[$i]} exited; last lines of $LOG_DIR/${NAMES[$i]}.log:" >&2
            tail -n 20 "$LOG_DIR/${NAMES[$i]}.log" >&2 || true
            return 1
        fi
    done
}

wait_ready() { # wait_ready NAME PORT PATH
    local deadline=$((SECONDS + READY_TIMEOUT))
    until [ "$(http_status "$2" GET "$3")" = 200 ]; do
        check_alive || fail "$1 did not come up"
        [ "$SECONDS" -lt "$deadline" ] || fail "$1 not ready on 127.0.0.1:$2$3 after ${READY_TIMEOUT}s (see $LOG_DIR/$1.log)"
        sleep 0.2
    done
    say "$1 ready (http://127.0.0.1:$2$3)"
}

# ---------------------------------------------------------------------------------------------
# Fresh state: database, JetStream streams, S3 bucket
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"; }
say "recreating database $DB_NAME"
psql_admin -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" -c "CREATE DATABASE \"$DB_NAME\""

# The streams of an earlier run may still hold messages that point at its (gone) staging
# objects: delete them with two JetStream API requests over the plain NATS protocol.
delete_streams() (
    base=$(printf '%s' "$NATS_PREFIX" | tr '[:lower:].-' '[:upper:]__')
    exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT" || exit 1
    IFS= read -r -t 5 line <&3 || exit 1 # the server's INFO
    printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _CLUSTER.reply 1\r\n' >&3
    for stream in "${base}_UPLOADS" "${base}_EVENTS"; do
        # shellcheck disable=SC2016 # $JS is the literal subject prefix, not a variable
        printf 'PUB $JS.API.STREAM.DELETE.%s _CLUSTER.reply 0\r\n\r\n' "$stream" >&3
    done
    answers=0 # wait for both answers ("not found" is fine too)
    while [ "$answers" -lt 2 ] && IFS= read -r -t 5 line <&3; do
        case $line in
            MSG*) answers=$((answers + 1)) ;;
            PING*) printf 'PONG\r\n' >&3 ;;
            -ERR*) exit 1 ;;
        esac
    done
    [ "$answers" = 2 ]
) 2>/dev/null
delete_streams || say "could not reset the JetStream streams (continuing)"

if [ -z "$STORE" ]; then
    say "starting moto S3 on 127.0.0.1:$S3_PORT"
    start s3 "$MOTO_SERVER" -H 127.0.0.1 -p "$S3_PORT"
    deadline=$((SECONDS + READY_TIMEOUT))
    until port_open "$S3_PORT"; do
        check_alive || fail "the S3 server did not start"
        [ "$SECONDS" -lt "$deadline" ] || fail "the S3 server did not listen on $S3_PORT"
        sleep 0.2
    done
    [ "$(http_status "$S3_PORT" PUT "/$S3_BUCKET")" = 200 ] || fail "could not create the bucket $S3_BUCKET"
fi

# ---------------------------------------------------------------------------------------------
# The Wharf services: one configuration, passed as the WHARF_* twins of the flags
export WHARF_DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB_NAME"
export WHARF_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export WHARF_NATS_PREFIX="$NATS_PREFIX"
if [ -n "$STORE" ]; then
    export WHARF_STORE="$STORE"
else
    export WHARF_STORE="s3://$S3_BUCKET/packages"
    export WHARF_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
    export WHARF_S3_REGION=us-east-1
    export WHARF_S3_ALLOW_HTTP=true
    export WHARF_S3_PATH_STYLE=true
    export AWS_ACCESS_KEY_ID=wharf-cluster AWS_SECRET_ACCESS_KEY=wharf-cluster
fi
export WHARF_VERIFIER="http://127.0.0.1:$VERIFIER_PORT"
export RUST_LOG=${RUST_LOG:-info} NO_COLOR=1
# The services never write to the data directory in this mode; point it away from ./wharf-data.
export WHARF_DATA_DIR="$LOG_DIR/data"
# The upload grant key pair: the verifier signs with the private key, workers verify with the
# public one (docs/security.md). A fresh pair per run.
rm -rf "$LOG_DIR/upload-grant"
"$WHARF_BIN" admin upload-grant-key --out "$LOG_DIR/upload-grant" >/dev/null
export WHARF_UPLOAD_GRANT_KEY_FILE="$LOG_DIR/upload-grant/upload-grant.key"
export WHARF_UPLOAD_GRANT_PUBLIC_KEY_FILES="$LOG_DIR/upload-grant/upload-grant.pub"

say "wharf migrate"
"$WHARF_BIN" migrate >"$LOG_DIR/migrate.log" 2>&1 || {
    cat "$LOG_DIR/migrate.log" >&2
    fail "wharf migrate failed"
}

WHARF_LISTEN="127.0.0.1:$VERIFIER_PORT" start verifier "$WHARF_BIN" verifier
wait_ready verifier "$VERIFIER_PORT" /readyz
for i in "${!WORKER_PORTS[@]}"; do
    WHARF_LISTEN="127.0.0.1:${WORKER_PORTS[$i]}" start "worker-$((i + 1))" "$WHARF_BIN" worker
done
for i in "${!GATEWAY_PORTS[@]}"; do
    WHARF_LISTEN="127.0.0.1:${GATEWAY_PORTS[$i]}" start "gateway-$((i + 1))" "$WHARF_BIN" gateway
done
for i in "${!WORKER_PORTS[@]}"; do wait_ready "worker-$((i + 1))" "${WORKER_PORTS[$i]}" /readyz; done
for i in "${!GATEWAY_PORTS[@]}"; do wait_ready "gateway-$((i + 1))" "${GATEWAY_PORTS[$i]}" /readyz; done

BIN_REL=${WHARF_BIN#"$ROOT"/}
cat <<EOF

Wharf cluster is up (all /readyz answered 200); logs in ${LOG_DIR#"$ROOT"/}/
  gateways   $(for p in "${GATEWAY_PORTS[@]}"; do printf 'http://127.0.0.1:%s/  ' "$p"; done)
  verifier   http://127.0.0.1:$VERIFIER_PORT (gRPC)
  workers    $(for p in "${WORKER_PORTS[@]}"; do printf 'http://127.0.0.1:%s/readyz  ' "$p"; done)
  index      $WHARF_DATABASE_URL
  bus        $WHARF_NATS_URL (prefix $NATS_PREFIX)
  store      $WHARF_STORE${WHARF_S3_ENDPOINT:+ at $WHARF_S3_ENDPOINT (moto, in memory)}

Create a user and a token (in another shell):
  export WHARF_DATABASE_URL=$WHARF_DATABASE_URL
  ./$BIN_REL admin user create alice
  TOKEN=\$(./$BIN_REL admin token create --user alice)
Publish through one gateway, install through the other:
  twine upload --repository-url http://127.0.0.1:${GATEWAY_PORTS[0]}/legacy/ -u __token__ -p "\$TOKEN" dist/*
  pip install --index-url http://127.0.0.1:${GATEWAY_PORTS[-1]}/simple/ your-package

EOF

if [ "$EXIT_AFTER_READY" = 1 ]; then
    say "CLUSTER_EXIT_AFTER_READY=1: stopping"
    exit 0
fi

say "running; press Ctrl-C to stop"
# Return on Ctrl-C (the trap stops everything) or when a service exits on its own (then stop
# the rest and fail). A Ctrl-C in the terminal reaches the services too, so give the trap the
# first word before blaming a service that exited because of it.
while :; do
    wait -n "${PIDS[@]}" 2>/dev/null || true
    sleep 0.5
    [ "$INTERRUPTED" = 0 ] || exit 130
    check_alive || exit 1
done
