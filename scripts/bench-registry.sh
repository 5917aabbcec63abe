#!/usr/bin/env bash
# bench-registry.sh — start a throw-away hub and run `roost bench registry` against it.
#
# Usage: scripts/bench-registry.sh [roost bench registry flags...]
#        e.g. scripts/bench-registry.sh --clients 1,4,16,64
#        ROOST_BIN=/path/to/roost scripts/bench-registry.sh ...   (skip the build)
#        RUNS=3 scripts/bench-registry.sh ...   (run the benchmark 3 times against the same hub)
#
# The hub runs on an empty temp data dir with loopback ports the kernel picks, and the benchmark
# finds it through that data dir. Around each benchmark run the script reads from /proc how much
# CPU the hub, the load generator and the rest of the machine used: on a small machine the
# generator and the hub share the cores, and anything else running skews the numbers.
# Not a pass/fail test (docs/BENCHMARKS.md).
set -euo pipefail

bench_name=registry
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
mapfile -t listeners < <(listener_flags)

"$bin" serve --data-dir "$work/data" "${listeners[@]}" --admin-addr 127.0.0.1:0 \
	--log-level warn >"$work/serve.out" 2>&1 &
pid=$!
for ((i = 0; i < 300; i++)); do
	grep -q '^Roost is ready' "$work/serve.out" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/serve.out" >&2; exit 1; }
	sleep 0.1
done
grep -q '^Roost is ready' "$work/serve.out" || { echo "bench-registry: the hub did not start" >&2; cat "$work/serve.out" >&2; exit 1; }

# cpu_ticks prints the hub's user+system CPU time in clock ticks (fields 14 and 15 of stat;
# the command name in field 2 has no spaces here).
cpu_ticks() {
	local -a f
	read -r -a f <"/proc/$pid/stat"
	echo $((f[13] + f[14]))
}
hz=$(getconf CLK_TCK)

# children_ticks prints the CPU time of this script's waited-for children (the benchmark).
children_ticks() {
	local -a f
	read -r -a f <"/proc/$$/stat"
	echo $((f[15] + f[16]))
}

# machine_ticks prints the CPU time all cores spent busy (user, nice, system, irq, softirq).
machine_ticks() {
	local cpu user nice system idle iowait irq softirq rest
	read -r cpu user nice system idle iowait irq softirq rest </proc/stat
	echo $((user + nice + system + irq + softirq))
}

rc=0
for ((run = 1; run <= ${RUNS:-1}; run++)); do
	t0=$(cpu_ticks) c0=$(children_ticks) m0=$(machine_ticks)
	s0=$EPOCHREALTIME
	"$bin" bench registry --data-dir "$work/data" "$@" || rc=$?
	s1=$EPOCHREALTIME
	t1=$(cpu_ticks) c1=$(children_ticks) m1=$(machine_ticks)
	wall_ms=$(((10#${s1/./} - 10#${s0/./}) / 1000))
	cpu_ms=$(((t1 - t0) * 1000 / hz))
	gen_ms=$(((c1 - c0) * 1000 / hz))
	rest_ms=$(((m1 - m0) * 1000 / hz - cpu_ms - gen_ms))
	rss=?
	while read -r k v _; do [[ $k == VmRSS: ]] && rss=$((v / 1024)); done <"/proc/$pid/status"
	pct() { echo "$(($1 * 100 / (wall_ms > 0 ? wall_ms : 1)))%"; }
	echo "cpu over ${wall_ms} ms (100% = one core): hub $(pct "$cpu_ms"), load generator $(pct "$gen_ms"), rest of the machine $(pct "$rest_ms") (kernel, other processes: should be small)" >&2
	echo "hub RSS after the run: ${rss} MiB" >&2
done
exit "$rc"
