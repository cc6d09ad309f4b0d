#!/usr/bin/env bash
# Make sure the services the tests need are there: a PostgreSQL answering on 127.0.0.1:5432 with
# a database `test`, the Celery brokers (Redis on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672 with
# guest/guest) and Debian's Chromium for the browser test. Installs them with apt when absent
# (needs root), starts them when installed but stopped. Idempotent.
set -euo pipefail

answers() { python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}
pg_answers() { answers 5432; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "ensure_services: need root to install $*" >&2; return 1; fi
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! pg_answers; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  conf=/etc/postgresql/$version/main
  # Trust auth on loopback, as on the development machines (test-only server).
  if ! grep -q "gpnas-ci" "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust # gpnas-ci\nhost all all ::1/128 trust # gpnas-ci\nlocal all all trust # gpnas-ci' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  for _ in $(seq 30); do pg_answers && break; sleep 1; done
fi
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -c 'create database test' >/dev/null 2>&1 || \
    su postgres -c "psql -c 'create database test'" >/dev/null
fi
echo "ensure_services: PostgreSQL answers on 127.0.0.1:5432"

if ! answers 6379; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
  for _ in $(seq 30); do answers 6379 && break; sleep 1; done
fi
echo "ensure_services: Redis answers on 127.0.0.1:6379"

if ! answers 5672; then
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  # The guest user may log in from loopback only, which is where the tests connect from.
  (rabbitmq-server >/tmp/gpnas-rabbitmq.log 2>&1 &)
  for _ in $(seq 90); do answers 5672 && break; sleep 1; done
fi
echo "ensure_services: RabbitMQ answers on 127.0.0.1:5672"

if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium chromium-driver || echo "ensure_services: chromium not installed; browser tests will skip" >&2
fi
