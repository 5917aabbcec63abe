#!/usr/bin/env bash
# bench-serve.sh — how fast `roost serve` starts and how much memory an idle hub holds.
#
# Usage: scripts/bench-serve.sh [RUNS]        (default 10)
#        ROOST_BIN=/path/to/roost scripts/bench-serve.sh   (skip the build)
#
# Each run starts `roost serve`, every listener on a free loopback port, on an empty temp data
# dir ("first start": it generates the CA, certificate and policies), measures the time from exec
# to the admin /healthz answering 200, reads VmRSS from /proc/<pid>/status after IDLE (default 3)
# seconds without requests, stops it, then starts it again on the same data dir ("restart") and
# measures the same. It prints every run and the medians. The "ready" column is the hub's own
# "Roost is ready (N ms)" line, which starts counting in runServe, after the Go runtime started.
#
# Only bash, /proc and coreutils: /healthz is polled with bash's /dev/tcp every 2 ms rather than
# with curl, whose fork and exec would compete with the starting hub for CPU on a small machine.
# The numbers are measurements of one machine, not pass/fail tests (docs/BENCHMARKS.md).
set -euo pipefail

runs=${1:-10}
idle=${IDLE:-3}
bench_name=serve
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"

# A read with a timeout on a pipe nobody writes to: a sleep without forking /bin/sleep.
exec {sleepfd}<> <(:)
nap() { read -r -t "$1" -u "$sleepfd" || true; }

now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }

# free_port prints a port nothing listens on, below the kernel's ephemeral range so that
# outgoing connections of other programs do not take it before the hub binds it. (Reading all of
# /proc/net/tcp instead costs seconds of CPU when the machine holds many connections.) A race
# with another program is still possible; start_once then retries on another port.
free_port() {
	local lo=32768 hi p fd
	[[ -r /proc/sys/net/ipv4/ip_local_port_range ]] && read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
	((lo > 11024)) || lo=32768
	while :; do
		p=$((10000 + RANDOM % (lo - 11024)))
		if exec {fd}<>"/dev/tcp/127.0.0.1/$p"; then
			exec {fd}>&-
			continue
		fi 2>/dev/null
		echo "$p"
		return
	done
}

# healthz succeeds when GET /healthz on 127.0.0.1:$1 answers 200.
healthz() {
	local fd line
	exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
	read -r -t 2 -u "$fd" line || line=
	exec {fd}>&-
	[[ $line == HTTP/1.?\ 200* ]]
}

median() {
	local -a a=("$@")
	local i j t n=${#a[@]}
	for ((i = 1; i < n; i++)); do
		t=${a[i]}
		for ((j = i - 1; j >= 0 && a[j] > t; j--)); do a[j + 1]=${a[j]}; done
		a[j + 1]=$t
	done
	if ((n % 2)); then echo "${a[n / 2]}"; else echo $(((a[n / 2 - 1] + a[n / 2]) / 2)); fi
}

# start_once DATA_DIR: starts a hub, waits for /healthz, waits IDLE s, reads its RSS, stops it.
# Sets startup_us, ready_ms and rss_kib. A hub that lost its admin port to another program is
# started again on another port.
start_once() {
	local dir=$1 admin out t0 t1 line deadline attempt healthy
	out=$work/serve.out
	for ((attempt = 1; ; attempt++)); do
		admin=$(free_port)
		t0=$(now_us)
		"$bin" serve --data-dir "$dir" "${listeners[@]}" --admin-addr "127.0.0.1:$admin" \
			--log-level warn >"$out" 2>&1 &
		pid=$!
		deadline=$((t0 + 30000000))
		healthy=false
		while kill -0 "$pid" 2>/dev/null && (($(now_us) < deadline)); do
			healthz "$admin" 2>/dev/null && { healthy=true; break; }
			nap 0.002
		done
		$healthy && break
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
		if ((attempt < 3)) && grep -q 'address is in use' "$out"; then
			continue
		fi
		echo "bench-serve: the hub did not become healthy:" >&2
		cat "$out" >&2
		exit 1
	done
	t1=$(now_us)
	startup_us=$((t1 - t0))
	ready_ms=
	while [[ -z $ready_ms ]] && (($(now_us) < t1 + 2000000)); do
		while read -r line; do
			[[ $line =~ ^Roost\ is\ ready\ \(([0-9]+)\ ms\) ]] && ready_ms=${BASH_REMATCH[1]}
		done <"$out"
		[[ -z $ready_ms ]] && nap 0.01
	done
	nap "$idle"
	rss_kib=
	while read -r line; do
		[[ $line =~ ^VmRSS:[[:space:]]+([0-9]+) ]] && rss_kib=${BASH_REMATCH[1]}
	done <"/proc/$pid/status"
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
}

# machine_ticks prints the CPU time all cores spent busy (user, nice, system, irq, softirq).
machine_ticks() {
	local cpu user nice system idle iowait irq softirq rest
	read -r cpu user nice system idle iowait irq softirq rest </proc/stat
	echo $((user + nice + system + irq + softirq))
}
hz=$(getconf CLK_TCK)
cores=$(nproc)
m0=$(machine_ticks) w0=$(now_us)

mapfile -t listeners < <(listener_flags)

declare -a first_start first_ready first_rss re_start re_ready re_rss
printf '%-4s  %-12s  %10s  %9s  %9s\n' run start healthz_ms ready_ms rss_MiB
for ((i = 1; i <= runs; i++)); do
	dir=$work/data-$i
	mkdir "$dir"
	for kind in first restart; do
		start_once "$dir"
		printf '%-4s  %-12s  %10d.%d  %9s  %9d.%d\n' "$i" "$kind" $((startup_us / 1000)) $((startup_us % 1000 / 100)) \
			"${ready_ms:-?}" $((rss_kib / 1024)) $((rss_kib % 1024 * 10 / 1024))
		if [[ $kind == first ]]; then
			first_start+=("$startup_us") first_ready+=("${ready_ms:-0}") first_rss+=("$rss_kib")
		else
			re_start+=("$startup_us") re_ready+=("${ready_ms:-0}") re_rss+=("$rss_kib")
		fi
	done
	rm -rf "$dir"
done

report() {
	local name=$1 s r m
	shift
	s=$(median "${@:1:runs}")
	r=$(median "${@:runs+1:runs}")
	m=$(median "${@:2*runs+1:runs}")
	printf '%-8s  %s\n' "$name" "median of $runs: exec to /healthz 200 = $((s / 1000)).$((s % 1000 / 100)) ms, ready line = $r ms, idle RSS = $((m / 1024)).$((m % 1024 * 10 / 1024)) MiB"
}
echo
report first "${first_start[@]}" "${first_ready[@]}" "${first_rss[@]}"
report restart "${re_start[@]}" "${re_ready[@]}" "${re_rss[@]}"
m1=$(machine_ticks) w1=$(now_us)
busy=$(((m1 - m0) * 1000000 / hz * 100 / ((w1 - w0) * cores)))
echo "machine CPU busy during the runs: ${busy}% of $cores cores (idle hubs use little; much more than a few % means something else ran and the numbers are suspect)"
