#!/usr/bin/env bash
# A RabbitMQ node of its own, beside (never instead of) the machine's node on 5672.
#
#   scripts/rabbitmq-node.sh start NAME PORT    # node NAME@localhost, AMQP on 127.0.0.1:PORT
#   scripts/rabbitmq-node.sh ctl NAME ARGS...   # rabbitmqctl -n NAME@localhost ARGS...
#   scripts/rabbitmq-node.sh stop NAME          # stop the node and remove its files
#
# Everything lives under ${GOVBRIDGE_RABBIT_BASE:-/tmp/govbridge-rabbit}/NAME: data, logs, config,
# an empty plugin list (no management or Prometheus ports). The Erlang distribution port is
# PORT + 20000. The chaos suite uses this to restart "its" broker (stop_app / start_app) without
# touching the node other work depends on. Needs the rabbitmq-server package (as CI installs).
set -euo pipefail
cmd=${1:?usage: start NAME PORT | ctl NAME ARGS... | stop NAME}
name=${2:?node name}
base=${GOVBRIDGE_RABBIT_BASE:-/tmp/govbridge-rabbit}/$name
node=$name@localhost

as_rabbitmq() {
  if [ "$(id -u)" = "$(id -u rabbitmq)" ]; then env "$@"; else
    su rabbitmq -s /bin/sh -c "$(printf '%q ' env "$@")"; fi
}

envs() {
  echo RABBITMQ_NODENAME="$node" RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log" \
    RABBITMQ_PID_FILE="$base/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" RABBITMQ_DIST_PORT="$dist" \
    RABBITMQ_NODE_PORT="$port" RABBITMQ_ADVANCED_CONFIG_FILE="$base/advanced.config" HOME=/var/lib/rabbitmq
}

case "$cmd" in
  start)
    port=${3:?port}
    dist=$((port + 20000))
    mkdir -p "$base/mnesia" "$base/log"
    echo "[]." > "$base/enabled_plugins"
    echo "[]." > "$base/advanced.config"
    printf 'listeners.tcp.local = 127.0.0.1:%s\nloopback_users = none\n' "$port" > "$base/rabbitmq.conf"
    echo "$port" > "$base/port"
    chown -R rabbitmq:rabbitmq "$base" 2>/dev/null || true
    # shellcheck disable=SC2046
    as_rabbitmq $(envs) /usr/lib/rabbitmq/bin/rabbitmq-server -detached
    for _ in $(seq 60); do  # -detached returns before the node has registered with epmd
      # shellcheck disable=SC2046
      if as_rabbitmq $(envs) timeout 120 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" -q \
        await_startup >/dev/null 2>&1; then exit 0; fi
      sleep 2
    done
    echo "node $node did not start; see $base/log" >&2
    exit 1
    ;;
  ctl)
    port=$(cat "$base/port"); dist=$((port + 20000))
    shift 2
    # shellcheck disable=SC2046
    as_rabbitmq $(envs) /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" "$@"
    ;;
  stop)
    if [ -f "$base/port" ]; then
      port=$(cat "$base/port"); dist=$((port + 20000))
      # shellcheck disable=SC2046
      as_rabbitmq $(envs) timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" stop || true
    fi
    rm -rf "$base"
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
