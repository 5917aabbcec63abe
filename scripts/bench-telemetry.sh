#!/usr/bin/env bash
# bench-telemetry.sh — MQTT telemetry benchmark: Roost and Mosquitto, same generator, same run.
#
# Usage: scripts/bench-telemetry.sh
#        ROOST_BIN=/path/to/roost scripts/bench-telemetry.sh     (skip the build)
#        REPS=3 DURATION=10s DEVICES=100 PAYLOAD=256 RATE=10000 IDLE_CONNS=19000 IDLE_HOLD=30s \
#        CONNECT_CONNS=3000 MAX_LOAD=3 GEN_PROCS=1 scripts/bench-telemetry.sh   (the defaults)
#
# Runs as root (it may install packages and raise limits). It installs mosquitto (and jq) with
# apt-get when missing, builds roost, starts a hub on an empty temp data dir with loopback ports
# the kernel picks, and a Mosquitto with persistence off on another free loopback port, serving
# the hub's own CA-signed ECDSA P-256 server certificate. Then `roost bench telemetry` runs
# against both with the same parameters, the two targets taking turns so that both see the same
# machine:
#
#   idle        IDLE_CONNS idle TLS connections held IDLE_HOLD, server RSS per connection
#               (first, on freshly started servers, so neither reuses memory of earlier tests)
#   connect     CONNECT_CONNS connections, REPS times: TLS connect rate with authentication
#   throughput  DEVICES connections publishing PAYLOAD-byte QoS 1 messages for DURATION, REPS times
#   latency     the same at a total RATE msgs/s, REPS times: PUBACK latency
#
# Each result records the load average; before each measurement the script waits (up to 60 s)
# for the 1-minute load average to fall below MAX_LOAD, because other work on a shared machine
# skews the numbers. Compare the Roost/Mosquitto ratios, which come from the same minutes.
# Results (JSON, one file per measurement) stay in $KEEP if set. Not a pass/fail test
# (docs/BENCHMARKS.md).
set -euo pipefail

reps=${REPS:-3}
duration=${DURATION:-10s}
devices=${DEVICES:-100}
payload=${PAYLOAD:-256}
rate=${RATE:-10000}
idle_conns=${IDLE_CONNS:-19000}
idle_hold=${IDLE_HOLD:-30s}
connect_conns=${CONNECT_CONNS:-3000}
max_load=${MAX_LOAD:-3}
# The generator runs on one OS thread: with the default (one per core) the Go scheduler's spinning
# threads cost it about 70% more CPU per message against Mosquitto, which sends each PUBACK in a
# TLS record of its own, and on two cores that CPU comes out of the server's share.
gen_procs=${GEN_PROCS:-1}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/roost-bench-telemetry.XXXXXX")
hub_pid= mosq_pid=

log() { echo "bench-telemetry: $*" >&2; }

cleanup() {
	for p in $hub_pid $mosq_pid; do
		if kill -0 "$p" 2>/dev/null; then
			kill -TERM "$p" 2>/dev/null || true
			wait "$p" 2>/dev/null || true
		fi
	done
	if [[ -n ${KEEP:-} ]]; then
		mkdir -p "$KEEP" && cp "$work"/*.json "$work"/*.log "$KEEP"/ 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [[ $(id -u) != 0 ]]; then
	log "run as root: it installs mosquitto and raises the open-file limit"
	exit 1
fi
if ! command -v mosquitto >/dev/null || ! command -v jq >/dev/null; then
	log "installing mosquitto and jq"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto jq >/dev/null
fi
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# Open files: 19,000 connections need as many descriptors in each server and in the generator.
want_files=$((idle_conns + 1000))
ulimit -Hn "$want_files" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
files=$(ulimit -n)
if [[ $files != unlimited ]] && ((files < idle_conns + 200)); then
	log "the open-file limit is $files (hard limit; raising it was refused): idle test with $((files - 200)) connections instead of $idle_conns"
	idle_conns=$((files - 200))
fi

bin=${ROOST_BIN:-}
if [[ -z $bin ]]; then
	bin=$work/roost
	(cd "$root" && go build -o "$bin" ./cmd/roost)
fi

# free_port prints a port no TCP socket on this machine uses, from /proc/net/tcp{,6}.
free_port() {
	local -A used=()
	local f sl local_addr rest p
	for f in /proc/net/tcp /proc/net/tcp6; do
		[[ -r $f ]] || continue
		while read -r sl local_addr rest; do
			[[ $sl == sl ]] && continue
			used[$((16#${local_addr##*:}))]=1
		done <"$f"
	done
	while :; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-)
		[[ -z ${used[$p]:-} ]] && { echo "$p"; return; }
	done
}

start_hub() {
	"$bin" serve --data-dir "$work/data" --https-addr 127.0.0.1:0 --mqtt-addr "127.0.0.1:$(free_port)" \
		--admin-addr 127.0.0.1:0 --log-level warn >>"$work/serve.log" 2>&1 &
	hub_pid=$!
	for ((i = 0; i < 300; i++)); do
		[[ -s $work/data/local.json && $(jq -r .mqttAddr "$work/data/local.json") != null ]] &&
			grep -q '^Roost is ready' "$work/serve.log" && break
		kill -0 "$hub_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
		sleep 0.1
	done
}

stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

mosq_port=$(free_port)
start_mosquitto() {
	# In memory, nothing stored; Nagle off as Go (and so Roost) has it. It runs as root so it
	# can read the hub's key in the 0700 data dir.
	cat >"$work/mosquitto.conf" <<-EOF
		user root
		persistence false
		allow_anonymous true
		log_dest none
		set_tcp_nodelay true
		listener $mosq_port 127.0.0.1
		certfile $work/data/tls/server.crt
		keyfile $work/data/tls/server.key
	EOF
	"$mosquitto_bin" -c "$work/mosquitto.conf" >>"$work/mosquitto.log" 2>&1 &
	mosq_pid=$!
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$mosq_port") 2>/dev/null && return
		kill -0 "$mosq_pid" 2>/dev/null || { cat "$work/mosquitto.log" >&2; exit 1; }
		sleep 0.1
	done
	log "mosquitto did not start"
	exit 1
}

# wait_calm waits up to 60 s for the 1-minute load average to fall below MAX_LOAD.
wait_calm() {
	local l _
	for ((i = 0; i < 60; i++)); do
		read -r l _ </proc/loadavg
		awk -v l="$l" -v m="$max_load" 'BEGIN { exit !(l < m) }' && return
		((i == 0)) && log "load average $l is at or above $max_load: waiting up to 60 s"
		sleep 1
	done
	log "load average still $l: measuring anyway (the result records it)"
}

# gen NAME TARGET ARGS...: one generator run, its JSON result in $work/NAME.json.
gen() {
	local name=$1 target=$2
	shift 2
	local -a t
	if [[ $target == roost ]]; then
		t=(--target roost --data-dir "$work/data" --server-pid "$hub_pid")
	else
		t=(--target mqtt --label mosquitto --mqtt-addr "127.0.0.1:$mosq_port" --ca-file "$work/data/tls/ca.crt"
			--tls-server-name localhost --server-pid "$mosq_pid")
	fi
	wait_calm
	local up
	up=$(uptime)
	if ! GOMAXPROCS=$gen_procs "$bin" bench telemetry "${t[@]}" --output json "$@" >"$work/$name.json" 2>>"$work/gen.log"; then
		log "$name: the generator reported errors (see below)"
		tail -5 "$work/gen.log" >&2
	fi
	jq -c --arg up "$up" '{target, mode, connected, msgsPerSec: (.msgsPerSec|round), p50: .latency.p50Ms, p99: .latency.p99Ms,
		connectsPerSec: (.connectsPerSec|round), serverCpuPerConnectMs, serverCpuPerMsgUs, rssPerConnKiB, errors, unacked,
		loadAvg, uptimeBefore: $up}' "$work/$name.json" >&2 ||
		log "$name: no result"
}

start_hub
start_mosquitto
log "hub pid $hub_pid (MQTT $(jq -r .mqttAddr "$work/data/local.json")), mosquitto pid $mosq_pid (port $mosq_port), open files $files"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"

log "idle: $idle_conns connections held $idle_hold"
gen idle-roost roost --mode idle --connections "$idle_conns" --duration "$idle_hold"
gen idle-mosquitto mqtt --mode idle --connections "$idle_conns" --duration "$idle_hold"

for ((r = 1; r <= reps; r++)); do
	log "connect rate $r/$reps: $connect_conns connections"
	gen "connect-roost-$r" roost --mode idle --connections "$connect_conns" --duration 1s
	gen "connect-mosquitto-$r" mqtt --mode idle --connections "$connect_conns" --duration 1s
done
for ((r = 1; r <= reps; r++)); do
	log "throughput $r/$reps: $devices devices x $payload B for $duration"
	gen "throughput-roost-$r" roost --devices "$devices" --payload "$payload" --duration "$duration"
	gen "throughput-mosquitto-$r" mqtt --devices "$devices" --payload "$payload" --duration "$duration"
done
for ((r = 1; r <= reps; r++)); do
	log "latency $r/$reps: $devices devices at $rate msgs/s"
	gen "latency-roost-$r" roost --devices "$devices" --payload "$payload" --duration "$duration" --rate "$rate"
	gen "latency-mosquitto-$r" mqtt --devices "$devices" --payload "$payload" --duration "$duration" --rate "$rate"
done

# median KIND TARGET FIELD: the median of a field over the repetitions.
median() {
	jq -s "map($3) | sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end" \
		"$work/$1-$2"-*.json
}
field() { jq "$3" "$work/$1-$2.json"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
loads() { jq -r '.loadAvg | split(" ")[0]' "$work/$1"-*.json | sort -n | sed -n '1p;$p' | paste -sd- -; }

tr=$(median throughput roost .msgsPerSec) tm=$(median throughput mosquitto .msgsPerSec)
lr=$(median latency roost .latency.p99Ms) lm=$(median latency mosquitto .latency.p99Ms)
l5r=$(median latency roost .latency.p50Ms) l5m=$(median latency mosquitto .latency.p50Ms)
cr=$(median connect roost .connectsPerSec) cm=$(median connect mosquitto .connectsPerSec)
ucr=$(median throughput roost .serverCpuPerMsgUs) ucm=$(median throughput mosquitto .serverCpuPerMsgUs)
ccr=$(median connect roost .serverCpuPerConnectMs) ccm=$(median connect mosquitto .serverCpuPerConnectMs)
ir=$(field idle roost .rssPerConnKiB) im=$(field idle mosquitto .rssPerConnKiB)
icr=$(field idle roost .connectsPerSec) icm=$(field idle mosquitto .connectsPerSec)
iar=$(field idle roost .alive) iam=$(field idle mosquitto .alive)

{
	echo
	echo "Telemetry benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, generator on the same machine"
	printf '%-44s %14s %14s %8s %s\n' measurement roost mosquitto ratio "load (1 min, low-high)"
	printf '%-44s %14.0f %14.0f %8s %s\n' "QoS 1 msgs/s, $devices x $payload B, median of $reps" "$tr" "$tm" "$(ratio "$tr" "$tm")" "$(loads throughput)"
	printf '%-44s %14.1f %14.1f %8s\n' "  server CPU us per message, median" "$ucr" "$ucm" "$(ratio "$ucr" "$ucm")"
	printf '%-44s %14.2f %14.2f %8s %s\n' "PUBACK p50 ms at $rate msgs/s, median" "$l5r" "$l5m" "$(ratio "$l5r" "$l5m")" "$(loads latency)"
	printf '%-44s %14.2f %14.2f %8s %s\n' "PUBACK p99 ms at $rate msgs/s, median" "$lr" "$lm" "$(ratio "$lr" "$lm")" "$(loads latency)"
	printf '%-44s %14.0f %14.0f %8s %s\n' "TLS connects/s, $connect_conns conns, median" "$cr" "$cm" "$(ratio "$cr" "$cm")" "$(loads connect)"
	printf '%-44s %14.2f %14.2f %8s\n' "  server CPU ms per connect, median" "$ccr" "$ccm" "$(ratio "$ccr" "$ccm")"
	printf '%-44s %14.0f %14.0f %8s %s\n' "TLS connects/s while opening $idle_conns" "$icr" "$icm" "$(ratio "$icr" "$icm")" "$(loads idle)"
	printf '%-44s %14s %14s %8s\n' "idle connections alive at the end" "$iar" "$iam" ""
	printf '%-44s %14.1f %14.1f %8s\n' "server RSS KiB per idle connection" "$ir" "$im" "$(ratio "$ir" "$im")"
	printf '%-44s %14.0f %14.0f\n' "  projected to 100,000 connections, MiB" \
		"$(awk -v k="$ir" 'BEGIN { print k * 100000 / 1024 }')" "$(awk -v k="$im" 'BEGIN { print k * 100000 / 1024 }')"
}
