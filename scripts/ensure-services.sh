#!/usr/bin/env bash
# Makes sure the services the scaled-mode tests talk to are running: PostgreSQL on
# 127.0.0.1:5432 and NATS with JetStream on 127.0.0.1:4222. Starts them when they are
# installed but stopped, installs them from Debian's packages when missing (as root), and
# otherwise fails with a clear message: tests are never skipped silently.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 NATS_PORT=4222

have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
    return 1
}
apt_install() {
    if [ "$(id -u)" != 0 ] || ! have apt-get; then
        echo "ensure-services: $* missing and cannot be installed here (needs root and apt-get)" >&2
        return 1
    fi
    echo "ensure-services: installing $* from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL
if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    if ! have pg_ctlcluster; then apt_install postgresql; fi
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
        echo "ensure-services: PostgreSQL is installed but has no cluster" >&2
        exit 1
    fi
    echo "ensure-services: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 100); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 0.1; done
    if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
        echo "ensure-services: PostgreSQL did not come up on $PG_HOST:$PG_PORT" >&2
        exit 1
    fi
fi

# NATS with JetStream
if ! port_open "$NATS_PORT"; then
    if ! have nats-server && [ ! -x /usr/sbin/nats-server ]; then apt_install nats-server; fi
    echo "ensure-services: starting nats-server with JetStream"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    if ! wait_port "$NATS_PORT"; then
        echo "ensure-services: NATS did not come up on 127.0.0.1:$NATS_PORT" >&2
        exit 1
    fi
fi
echo "ensure-services: PostgreSQL and NATS are up"
