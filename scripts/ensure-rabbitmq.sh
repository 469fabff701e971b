#!/usr/bin/env bash
# Make sure a RabbitMQ is reachable: GOVBRIDGE_AMQP_URL's host or localhost:5672.
# Starts the local rabbitmq-server, else `docker compose up -d rabbitmq`, else says how.
set -euo pipefail
url="${GOVBRIDGE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport=$(python3 - "$url" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(f"{u.hostname or '127.0.0.1'} {u.port or 5672}")
PY
)
read -r host port <<<"$hostport"

reachable() {
  python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

# A local RabbitMQ started through `su rabbitmq` gets the default 1024 open files; quorum queues
# keep files open, and a few test runs' worth of them exhaust that: the broker then still accepts
# TCP but never answers the AMQP handshake. Raise its soft limit (up to the hard one) where we can.
raise_fd_limit() {
  local env=/etc/rabbitmq/rabbitmq-env.conf
  if [ -w "$env" ] && ! grep -q "ulimit" "$env"; then
    echo 'ulimit -S -n 20000 2>/dev/null || true  # added by govbridge: quorum queues need files' >> "$env"
  fi
}
warn_fd_limit() {
  local soft
  soft=$(fd_soft_limit)
  if [ "${soft:-0}" -lt 4096 ] 2>/dev/null; then
    echo "warning: the local RabbitMQ may open only $soft files; many quorum queues need more" \
      "(add 'ulimit -S -n 20000' to /etc/rabbitmq/rabbitmq-env.conf and restart it)" >&2
  fi
}

fd_soft_limit() {
  local pid
  pid=$(pgrep -f "beam.smp.*rabbit" 2>/dev/null | head -1) || return 0
  [ -n "$pid" ] && [ -r "/proc/$pid/limits" ] || return 0
  awk '/Max open files/ {print $4}' "/proc/$pid/limits"
}

await_node() {
  # await_startup fails at once until the node has registered with epmd: ask again.
  for _ in $(seq 1 40); do
    rabbitmqctl await_startup --timeout 10 >/dev/null 2>&1 && return 0
    pgrep -f 'beam.smp.*rabbit' >/dev/null 2>&1 || rabbitmq-server -detached || true
    sleep 3
  done
}

# CI (GOVBRIDGE_CI=1) runs alone on its machine and starts from a fresh local node: a restart
# raises a low open-file limit, and heals a node whose at-least-once dead-letter supervisor has
# given up (RabbitMQ 3.10 allows its workers one crash in 5 s; deleting many quorum queues at
# once can cost two, and from then on every such queue fails to start: rabbitmq-server#16652).
if [ "${GOVBRIDGE_CI:-0}" = 1 ] && reachable && command -v rabbitmqctl >/dev/null 2>&1 \
  && { [ "$host" = 127.0.0.1 ] || [ "$host" = localhost ]; }; then
  echo "restarting the local RabbitMQ for a fresh node (open-file limit $(fd_soft_limit)) ..."
  raise_fd_limit
  rabbitmqctl stop >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do pgrep -f 'beam.smp.*rabbit' >/dev/null 2>&1 || break; sleep 1; done
  rabbitmq-server -detached || true
  await_node
  for _ in $(seq 1 60); do reachable && break; sleep 2; done
  echo "its open-file limit is now $(fd_soft_limit)"
fi

if reachable; then
  echo "RabbitMQ reachable at $host:$port"
  warn_fd_limit
  exit 0
fi
if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
  echo "RabbitMQ at $host:$port (GOVBRIDGE_AMQP_URL) is not reachable; start it there." >&2
  exit 1
fi
if command -v rabbitmq-server >/dev/null 2>&1; then
  echo "starting the local rabbitmq-server ..."
  raise_fd_limit
  rabbitmq-server -detached || true
  await_node
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "starting RabbitMQ with docker compose ..."
  # Only RabbitMQ starts; compose insists on the bridge's secrets being set for the whole file.
  GOVBRIDGE_ADMIN_TOKEN="${GOVBRIDGE_ADMIN_TOKEN:-unused}" HOTLINE_SECRET="${HOTLINE_SECRET:-unused}" \
    URBAN_CALLBACK_SECRET="${URBAN_CALLBACK_SECRET:-unused}" docker compose up -d rabbitmq
else
  cat >&2 <<MSG
RabbitMQ is not reachable at $host:$port and cannot be started here.
Start one of:
  - Debian/Ubuntu:  sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached
  - Docker:         docker compose up -d rabbitmq
or point GOVBRIDGE_AMQP_URL at a running broker (amqp://user:pass@host:5672/).
MSG
  exit 1
fi
for _ in $(seq 1 60); do
  if reachable; then echo "RabbitMQ reachable at $host:$port"; exit 0; fi
  sleep 2
done
echo "RabbitMQ did not come up at $host:$port within 120 s; its log:" >&2
tail -n 40 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
exit 1
