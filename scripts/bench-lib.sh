# bench-lib.sh — sourced by the bench scripts for what they share: a temp work dir that is removed
# at exit together with the hub the script started ($pid), the roost binary ($ROOST_BIN, or a
# fresh build into the work dir), and listener_flags, which puts a hub on free loopback ports.
# Set bench_name before sourcing it.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/roost-bench-${bench_name:-run}.XXXXXX")
pid=

cleanup() {
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # so that cleanup runs on Ctrl-C and kill too

bin=${ROOST_BIN:-}
if [[ -z $bin ]]; then
	bin=$work/roost
	(cd "$root" && go build -o "$bin" ./cmd/roost)
fi

# listener_flags prints "--<name>-addr 127.0.0.1:0" for every listener flag of `roost serve`
# (HTTPS, MQTT, ...) so the hub binds only free loopback ports and never collides with another
# hub on the machine, whatever listeners this build has.
listener_flags() {
	local line
	while read -r line; do
		[[ $line =~ ^-([a-z-]+-addr)[[:space:]] || $line =~ ^-([a-z-]+-addr)$ ]] || continue
		[[ ${BASH_REMATCH[1]} == admin-addr ]] && continue
		printf -- '--%s\n127.0.0.1:0\n' "${BASH_REMATCH[1]}"
	done < <("$bin" serve --help 2>&1)
}
