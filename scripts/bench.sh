#!/usr/bin/env bash
# make bench: lookups/s and latency of shitenno against the physical limit
# of this machine (issue 6), SMTP AUTH logins/s and policy requests/s
# against the direct HTTP hop (issue 17), and nginx auth_http requests/s
# with the brute-force limiter on against off (issue 19). Builds what is
# needed, runs the codec/bridge microbenchmarks and the 1,000,000-lookup
# leak check, then starts the backends, the null responders and the
# daemons (generated configuration in a temp dir) and measures every
# scenario. Prints the tables and writes bench/RESULTS.md. Takes about
# four minutes.
#
# Knobs (environment): BENCH_DURATION (measured time per run, default
# 2s), BENCH_CONNS (default 1,8,64), BENCH_REPEAT (rounds at each of the
# BENCH_REPEAT_AT concurrencies, default 3), BENCH_REPEAT_AT (default
# 1,8,64: issue 21's targets are set at every concurrency, and a single
# round moves by ±10 % on a shared machine), BENCH_BACKEND (builtin | example),
# BENCH_PROTOCOLS (default postfix,dovecot,sasl,policy,nginx), BENCH_OUT
# (default bench/RESULTS.md), BENCH_MICRO=0 / BENCH_LEAK=0 to skip those
# parts. A quick look: BENCH_DURATION=1s BENCH_CONNS=8 BENCH_REPEAT=1
# BENCH_MICRO=0 BENCH_LEAK=0 make bench.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
GO="${GO:-go}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shitenno-bench.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

# Build the daemons that exist (a daemon still missing is reported as
# skipped, not fatal) and the load generator, into the temp dir: bin/ is
# left as make build made it.
bin="$tmp/bin"
mkdir -p "$bin"
pkgs=()
for c in shitenno-postfix shitenno-dovecot shitenno-nginx shitenno-example-backend shitenno-bench; do
	[ -d "cmd/$c" ] && pkgs+=("./cmd/$c")
done
echo "== build: ${pkgs[*]}"
"$GO" build -trimpath -o "$bin/" "${pkgs[@]}"

extra=()
if [ "${BENCH_MICRO:-1}" != 0 ]; then
	echo "== microbenchmarks (go test -bench . -benchmem)"
	mpkgs=()
	# cmd/shitenno-bench: BenchmarkNginxHandler, the limiter off and on.
	for p in ./pkg/socketmap ./pkg/bridge ./pkg/dict ./cmd/shitenno-bench; do
		ls "$p"/*_test.go >/dev/null 2>&1 && grep -qs '^func Benchmark' "$p"/*_test.go && mpkgs+=("$p")
	done
	"$GO" test -run '^$' -bench . -benchmem -benchtime "${BENCH_MICRO_TIME:-200ms}" "${mpkgs[@]}" | tee "$tmp/micro.txt"
	{
		echo "## Microbenchmarks"
		echo
		echo "\`go test -run '^\$' -bench . -benchmem\` on ${mpkgs[*]} (codec aim: 0 allocs/op)."
		echo
		echo "| package | benchmark | ns/op | B/op | allocs/op |"
		echo "|---|---|---:|---:|---:|"
		awk '/^pkg: / { pkg = $2; sub(".*/pkg/", "pkg/", pkg); sub(".*/cmd/", "cmd/", pkg) }
		     /^Benchmark/ { name = $1; sub(/-[0-9]+$/, "", name); ns = b = a = "";
		       for (i = 3; i < NF; i++) { if ($(i+1) == "ns/op") ns = $i; if ($(i+1) == "B/op") b = $i; if ($(i+1) == "allocs/op") a = $i }
		       printf "| %s | %s | %s | %s | %s |\n", pkg, name, ns, b, a }' "$tmp/micro.txt"
	} > "$tmp/micro.md"
	extra+=(--append "$tmp/micro.md")
fi

if [ "${BENCH_LEAK:-1}" != 0 ]; then
	echo "== leak check: 1,000,000 lookups through socketmap.Server + postfix bridge"
	SHITENNO_BENCH_LEAK_OUT="$tmp/leak.rows" "$GO" test -count=1 -run 'TestNoHeapGrowth|TestLeakCheckDetectsALeak' -v ./cmd/shitenno-bench |
		grep -E 'lookups:|^(--- |ok|FAIL)' || true
	{
		echo
		echo "## Leak check"
		echo
		echo "\`go test -run TestNoHeapGrowth ./cmd/shitenno-bench\`: lookups over 4 in-memory connections (net.Pipe) after a warm-up;"
		echo "live heap after forced GCs, before vs after (bound +2 MB). Allocations include net.Pipe's deadline timers"
		echo "(first row: the server alone), which a unix socket does not allocate (BenchmarkServerRoundTrip)."
		echo
		echo "| path | lookups | live heap growth | allocs/lookup | bytes allocated/lookup |"
		echo "|---|---:|---:|---:|---:|"
		cat "$tmp/leak.rows" 2>/dev/null || echo "| (leak check failed: see the output above) | | | | |"
	} > "$tmp/leak.md"
	extra+=(--append "$tmp/leak.md")
fi

echo "== scenarios"
"$bin/shitenno-bench" run \
	--bin "$bin" \
	--work "$tmp" \
	--backend "${BENCH_BACKEND:-builtin}" \
	--protocols "${BENCH_PROTOCOLS:-postfix,dovecot,sasl,policy,nginx}" \
	--conns "${BENCH_CONNS:-1,8,64}" \
	--duration "${BENCH_DURATION:-2s}" \
	--repeat "${BENCH_REPEAT:-3}" \
	--repeat-at "${BENCH_REPEAT_AT:-1,8,64}" \
	--out "${BENCH_OUT:-bench/RESULTS.md}" \
	--commit "$(git describe --tags --always --dirty 2>/dev/null || echo unknown)" \
	"${extra[@]}"
