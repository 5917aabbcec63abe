#!/usr/bin/env bash
# End-to-end suite: builds roost, starts it on 127.0.0.1:443 (HTTPS, MQTT over WebSockets) and
# 127.0.0.1:8883 (MQTT over TLS) with a throw-away data dir and drives it with the unmodified
# `azure-iothub` service SDK and `azure-iot-device` device SDKs through Node's built-in test runner.
#
# Needs root (or CAP_NET_BIND_SERVICE) because the Node SDKs always dial port 443 (and 8883 for
# MQTT). Needs Go, Node 20+ and npm; no curl. Exits with the test runner's exit code.
# Extra arguments are passed to `node --test` (e.g. --test-name-pattern=Mqtt).
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E_DIR/../.." && pwd)"

HTTPS_ADDR="127.0.0.1:443"
MQTT_ADDR="127.0.0.1:8883"
ADMIN_ADDR="127.0.0.1:18080"
HEALTH_URL="http://$ADMIN_ADDR/healthz"
READY_TIMEOUT_S=20

WORK="$(mktemp -d -t roost-e2e.XXXXXX)"
BIN="$WORK/roost"
DATA_DIR="$WORK/data"
LOG="$WORK/roost.log"
SERVER_PID=""

log() { printf 'e2e: %s\n' "$*" >&2; }

print_server_log() {
	if [[ -s "$LOG" ]]; then
		log "---- roost server log ($LOG) ----"
		cat "$LOG" >&2
		log "---- end of roost server log ----"
	fi
}

cleanup() {
	local rc=$?
	if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID" 2>/dev/null || true
		# Give it a moment to shut down cleanly, then insist.
		for _ in $(seq 1 50); do
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ "$(id -u)" != "0" ]]; then
	log "warning: not running as root; binding $HTTPS_ADDR will probably fail"
fi

log "building roost"
(cd "$ROOT" && go build -o "$BIN" ./cmd/roost)

log "installing npm dependencies"
(cd "$E2E_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

mkdir -p "$DATA_DIR"
log "starting roost (data dir $DATA_DIR, log $LOG)"
"$BIN" serve \
	--data-dir "$DATA_DIR" \
	--hostname localhost \
	--https-addr "$HTTPS_ADDR" \
	--mqtt-addr "$MQTT_ADDR" \
	--admin-addr "$ADMIN_ADDR" \
	>"$LOG" 2>&1 &
SERVER_PID=$!

# Readiness probe in node rather than curl (CI machines may lack curl): exit 0 on HTTP 200.
probe_health() {
	node -e '
		const req = require("node:http").get(process.argv[1], { timeout: 2000 }, (res) => {
			res.resume();
			process.exit(res.statusCode === 200 ? 0 : 1);
		});
		req.on("timeout", () => req.destroy(new Error("timeout")));
		req.on("error", () => process.exit(1));
	' "$HEALTH_URL" 2>/dev/null
}

deadline=$((SECONDS + READY_TIMEOUT_S))
until probe_health; do
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		log "roost exited before becoming ready"
		print_server_log
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		log "roost not ready after ${READY_TIMEOUT_S}s ($HEALTH_URL)"
		print_server_log
		exit 1
	fi
	sleep 0.2
done
log "roost is ready"

CA_CERT="$DATA_DIR/tls/ca.crt"
if [[ ! -s "$CA_CERT" ]]; then
	log "missing CA certificate $CA_CERT"
	print_server_log
	exit 1
fi

if ! CONN="$("$BIN" connection-string --data-dir "$DATA_DIR")" || [[ -z "$CONN" ]]; then
	log "could not get the iothubowner connection string"
	print_server_log
	exit 1
fi

export ROOST_CONNECTION_STRING="$CONN"
export ROOST_BIN="$BIN"
export ROOST_DATA_DIR="$DATA_DIR"
export ROOST_ADMIN_URL="http://$ADMIN_ADDR"
export NODE_EXTRA_CA_CERTS="$CA_CERT"
# The server listens on IPv4 only; make "localhost" resolve there first.
export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--dns-result-order=ipv4first"

log "running tests"
set +e
(cd "$E2E_DIR" && node --test --test-concurrency=1 "$@" ./*.test.js)
rc=$?
set -e

if ((rc != 0)); then
	log "tests failed (exit $rc)"
	print_server_log
fi
exit "$rc"
