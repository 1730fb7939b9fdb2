#!/usr/bin/env bash
# Prometheus: `stats --format prometheus` passes promtool, and a real
# Prometheus server (Debian's) scrapes `metrics --listen` in the test's
# host namespace and reports the datapath's counters.
. "$(dirname "$0")/../lib.sh"

METRICS=127.0.0.1:9469

# An HTTP GET from inside the host namespace: prints STATUS, then the body.
http_get() {  # URL
	in_host timeout 10 python3 - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status)
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
    sys.stdout.write(e.read().decode())
except Exception as e:
    print("error", e)
EOF
}

# The CLI's metrics server in the host namespace; waits until it listens.
start_metrics() {  # ARGS...
	# ip netns exec execs the CLI: $! is its pid, for the signal.
	ip netns exec "$H" "$DH_BIN" --pin-dir "$PIN" metrics "$@" >"$DH_SCRATCH/metrics.out" 2>"$DH_SCRATCH/metrics.err" &
	METRICS_PID=$!
	wait_listening tcp 9469
}

# Ends it with SIGTERM: it must be gone within a few seconds, with exit 0.
stop_metrics() {
	local i rc=0
	kill -TERM "$METRICS_PID"
	for i in $(seq 50); do
		kill -0 "$METRICS_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$METRICS_PID" 2>/dev/null; then
		kill -KILL "$METRICS_PID"
		fail "metrics still running 5 s after SIGTERM"
	fi
	wait "$METRICS_PID" || rc=$?
	expect_eq "$rc" 0 "metrics' exit code after SIGTERM (stderr: $(cat "$DH_SCRATCH/metrics.err"))"
}

# Some traffic of each family through port 8080 (IPv6 only where the
# mode carries it).
make_traffic() {  # MODE
	local i
	for i in 1 2 3; do
		expect_eq "$(tcp_get "$GW" 8080)" hello "IPv4 connection $i"
	done
	if [ "$1" = socket ]; then
		expect_eq "$(tcp6_get "$GW6" 8080)" hello6 "IPv6 connection"
	fi
}

setup_service() {
	add_ipv6
	dh attach br0
	dh port add 8080
	dh port add 5353/udp --bridge br0
	serve_tcp 8080 127.0.0.1 hello
	serve_tcp6 8080 ::1 hello6
}

test_stats_format_prometheus_passes_promtool() {
	local mode out json n_counters n_samples
	command -v promtool >/dev/null || fail "promtool missing: scripts/install-deps.sh installs Debian's prometheus"
	# Before any attach: no pin set, every counter zero, still valid.
	out=$(dh stats --format prometheus 2>&1) || fail "stats --format prometheus: $out"
	printf '%s\n' "$out" | promtool check metrics || fail "promtool on the empty set: $out"
	expect_contains "$out" 'dockhost_packets_dropped_total{reason="loopback_dst"} 0' "a drop reason"
	expect_contains "$out" "dockhost_bridges_attached 0" "no bridge"
	for mode in socket nat; do
		[ "$mode" = nat ] && dh attach br0 --mode nat >/dev/null
		[ "$mode" = socket ] && setup_service
		make_traffic "$mode"
		out=$(dh stats --format prometheus)
		OUT=$(printf '%s\n' "$out" | promtool check metrics 2>&1) || fail "promtool ($mode): $OUT; metrics: $out"
		expect_eq "$OUT" "" "promtool's complaints ($mode)"
		expect_contains "$out" "dockhost_bridge_mode{bridge=\"br0\",mode=\"$mode\"} 1" "mode gauge ($mode)"
		expect_contains "$out" 'dockhost_port_packets_total{bridge="*",port="8080",protocol="tcp"}' "per-port"
		expect_contains "$out" 'dockhost_port_bytes_total{bridge="br0",port="5353",protocol="udp"} 0' "per-bridge port"
		# Every datapath counter is exported exactly once, with its value.
		json=$(dh --json stats)
		n_counters=$(printf '%s\n' "$json" | grep -c '":')
		n_samples=$(printf '%s\n' "$out" | grep -v -E '^(#|dockhost_(port|bridge))' | grep -c .)
		expect_eq "$n_samples" "$n_counters" "samples of datapath counters ($mode)"
	done
	expect_contains "$out" "dockhost_packets_redirected_total $(counter redirected)" "NAT's redirected"
	expect_contains "$out" "dockhost_bridge_route_localnet{bridge=\"br0\"} 1" "NAT mode's route_localnet"
	# --per-source: the sources map, one series per source and port,
	# matching stats --by-source; valid too.
	out=$(dh stats --format prometheus --per-source)
	OUT=$(printf '%s\n' "$out" | promtool check metrics 2>&1) || fail "promtool --per-source: $OUT"
	expect_eq "$OUT" "" "promtool's complaints (--per-source)"
	json=$(dh --json stats --by-source | python3 -c '
import json, sys
r = [r for r in json.load(sys.stdin)["sources"] if r["source"] == sys.argv[1] and r["port"] == 8080][0]
print(r["flows"], r["packets"])' "$CTR")
	expect_contains "$out" "dockhost_source_flows_total{bridge=\"br0\",source=\"$CTR\",port=\"8080\",protocol=\"tcp\"} ${json% *}" \
		"per-source flows"
	expect_contains "$out" "dockhost_source_refused_total{bridge=\"br0\",source=\"$CTR\",port=\"8080\",protocol=\"tcp\",reason=\"not_allowed\"} 0" \
		"per-source refusals by reason"
	expect_not_contains "$(dh stats --format prometheus)" dockhost_source_ "no per-source series by default"
}

test_metrics_served_to_a_real_prometheus() {
	local dir i value want assigned redirected
	command -v prometheus >/dev/null || fail "prometheus missing: scripts/install-deps.sh installs Debian's prometheus"
	setup_service
	# A second bridge in NAT mode with a container of its own: both modes
	# in one scrape.
	make_bridge "$H" br1 10.202.0.1
	make_container "$C-2" br1 10.202.0.2 10.202.0.1
	dh attach br1 --mode nat
	make_traffic socket
	for i in 1 2; do
		expect_eq "$(tcp_get 10.202.0.1 8080 "$C-2")" hello "NAT bridge connection $i"
	done
	start_metrics --listen "$METRICS"

	dir=$DH_SCRATCH/prometheus
	mkdir -p "$dir/data"
	cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dockhost
    static_configs:
      - targets: ['$METRICS']
EOF
	in_host prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--web.listen-address=127.0.0.1:9090 >"$dir/log" 2>&1 &
	wait_listening tcp 9090 || fail "prometheus did not start: $(tail -5 "$dir/log")"

	# The values the datapath holds now; no traffic changes them below.
	want=$(dh --json port list | python3 -c '
import json, sys
print(next(p["packets"] for p in json.load(sys.stdin) if p["bridge"] == "*" and p["port"] == 8080))')
	assigned=$(counter assigned)
	redirected=$(counter redirected)
	[ "$want" -gt 0 ] && [ "$assigned" -gt 0 ] && [ "$redirected" -gt 0 ] ||
		fail "no traffic counted: port $want, assigned $assigned, redirected $redirected"

	prom_wait 'up{job="dockhost"}' 1
	prom_wait 'dockhost_port_packets_total{bridge="*",port="8080",protocol="tcp"}' "$want"
	prom_wait 'dockhost_sk_lookup_assigned_total' "$assigned"
	prom_wait 'dockhost_packets_redirected_total' "$redirected"
	prom_wait 'dockhost_bridge_mode{bridge="br1",mode="nat"}' 1
	prom_wait 'dockhost_bridge_mode{bridge="br0",mode="socket"}' 1
	stop_metrics
}

# Polls Prometheus' query API (at most 30 s) until EXPR's value is WANT.
prom_wait() {  # EXPR WANT
	in_host timeout 40 python3 - "$1" "$2" <<'EOF' || fail "Prometheus: $1 never became $2"
import json, sys, time, urllib.parse, urllib.request
expr, want = sys.argv[1], sys.argv[2]
url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
got = None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            result = json.load(r)["data"]["result"]
        got = [s["value"][1] for s in result]
        if got == [want]:
            sys.exit(0)
    except Exception as e:
        got = str(e)
    time.sleep(0.5)
print("last answer:", got, file=sys.stderr)
sys.exit(1)
EOF
}

test_metrics_answers_only_get_metrics() {
	local out
	dh attach br0
	start_metrics  # the default address
	expect_contains "$(cat "$DH_SCRATCH/metrics.out")" "http://127.0.0.1:9469/metrics" "what it serves"
	out=$(http_get "http://$METRICS/metrics")
	expect_eq "$(head -1 <<<"$out")" 200 "GET /metrics"
	expect_contains "$out" "dockhost_bridges_attached 1" "the body"
	out=$(http_get "http://$METRICS/")
	expect_eq "$(head -1 <<<"$out")" 404 "GET /"
	out=$(http_get "http://$METRICS/metricsx")
	expect_eq "$(head -1 <<<"$out")" 404 "GET /metricsx"
	# Bad requests: nonsense, a POST, a head too large, a client that
	# says nothing and one that leaves half-way. Each gets its answer or
	# is dropped, and the server serves the next one.
	out=$(printf 'garbage\r\n\r\n' | in_host timeout 10 socat -T5 - "TCP4:$METRICS")
	expect_contains "$out" "HTTP/1.1 400" "nonsense"
	out=$(printf 'POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n' | in_host timeout 10 socat -T5 - "TCP4:$METRICS")
	expect_contains "$out" "HTTP/1.1 405" "POST"
	out=$( (printf 'GET /metrics HTTP/1.1\r\n'; head -c 20000 /dev/zero | tr '\0' a) |
		in_host timeout 10 socat -T5 - "TCP4:$METRICS" 2>/dev/null || true)
	[ -z "$out" ] || expect_contains "$out" "HTTP/1.1 431" "a head too large"
	printf 'GET /metr' | in_host timeout 10 socat -T1 - "TCP4:$METRICS" >/dev/null 2>&1 || true
	# Silent for longer than the server waits (5 s): a 408, then closed.
	out=$(sleep 8 | in_host timeout 12 socat -T10 - "TCP4:$METRICS" 2>&1 || true)
	expect_contains "$out" "HTTP/1.1 408" "a client that says nothing"
	out=$(http_get "http://$METRICS/metrics")
	expect_eq "$(head -1 <<<"$out")" 200 "GET /metrics after the bad requests"
	out=$(printf 'HEAD /metrics HTTP/1.0\r\n\r\n' | in_host timeout 10 socat -T5 - "TCP4:$METRICS")
	expect_contains "$out" "HTTP/1.1 200" "HEAD"
	expect_not_contains "$out" "dockhost_" "HEAD's body"
	stop_metrics
}

test_metrics_bad_listen_addresses() {
	local addr
	for addr in 127.0.0.1 127.0.0.1: :9469 127.0.0.1:0 127.0.0.1:65536 localhost:9469 ::1:9469 '[::1]' \
		'[127.0.0.1]:9469' '[::1]9469' 1.2.3:80 '' 'x y:1'; do
		expect_exit 2 dh metrics --listen "$addr"
		expect_contains "$OUT" "--listen '$addr'" "message for '$addr'"
		[ "$(printf '%s\n' "$OUT" | wc -l)" = 1 ] || fail "more than one line for '$addr': $OUT"
	done
	expect_exit 2 dh metrics --listen
	expect_exit 2 dh metrics extra
	expect_exit 2 dh stats --format yaml
	expect_contains "$OUT" "--format 'yaml'" "bad format"
	expect_exit 2 dh stats --format prometheus --reset
	expect_exit 2 dh stats --per-source
	# An address this namespace does not have: a runtime error.
	expect_exit 1 dh metrics --listen 192.0.2.1:9469
	expect_contains "$OUT" "192.0.2.1:9469" "bind failure names the address"
	# IPv6 works too.
	start_metrics --listen '[::1]:9469'
	expect_eq "$(http_get 'http://[::1]:9469/metrics' | head -1)" 200 "GET over IPv6"
	stop_metrics
}

run_tests
