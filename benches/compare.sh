#!/usr/bin/env bash
# Side-by-side performance comparison of the exporter: builds it
# in release, runs it against a fake Partner Center (benches/compare_upstream.rs),
# and measures it next to nginx serving the same /metrics bytes as a static
# file and Debian's prometheus-node-exporter, with wrk as the load. Every
# target is a ratio taken in one run on one machine, so the numbers mean
# something on a noisy machine too; absolute values are printed beside them.
# The exporter is a black box here: its binary, a config file, /metrics,
# /proc/PID/status.
#
# Not part of `cargo test` or .ci/run. Run it from anywhere:
#   benches/compare.sh
# Knobs (environment): WRK_SECONDS (10), ITEMS (100000), BIG_POLLS (8),
# EXPORTER_GLIBC_TUNABLES (by default any GLIBC_TUNABLES the Dockerfile sets,
# so the exporter runs as deployed: none since the binary brings its own
# allocator, which glibc's malloc tunables do not reach).
# Needs: cargo, curl, gzip, strip, nginx (with gzip_static), wrk,
# prometheus-node-exporter; it says what to install when one is missing.
# The first run also builds the fake upstream in release (minutes); later
# runs reuse it. Everything it starts listens on 127.0.0.1 only and is
# stopped on exit, whatever happens; its files live in one temporary
# directory, removed on exit.
#
# How each target is measured:
# - throughput: wrk, 32 keep-alive connections, gzip asked, against the
#   exporter with the 5-item snapshot and against nginx serving the very
#   gzip bytes the exporter sent (gzip_static), one after the other;
# - latency and scrape p99: one connection, as a Prometheus server scrapes a
#   target; with 32 on two cores they would measure queueing behind wrk;
# - p99 while polls are decoded: the upstream's /repeat answer has ITEMS
#   items over 5 series, so decoding is the only difference to the idle run
#   (same small snapshot, same scrape size); polls run back to back;
# - decode+snapshot+render: the fake upstream times the gap from handing
#   over a 100k-item answer to the next request (polls back to back), i.e.
#   reading the tail, decoding, building and rendering the snapshot; it
#   also times serde_json parsing the same body into a Value, the yardstick;
# - memory: VmRSS/VmHWM from /proc after the polls and scrapes named in
#   the table; node_exporter (Debian's defaults) after the same scrapes.
set -euo pipefail

cd "$(dirname "$0")/.."

WRK_SECONDS=${WRK_SECONDS:-10}
EXPORTER_GLIBC_TUNABLES=${EXPORTER_GLIBC_TUNABLES-$(sed -n 's/^ENV GLIBC_TUNABLES=//p' deploy/docker/Dockerfile)}
ITEMS=${ITEMS:-100000}
BIG_POLLS=${BIG_POLLS:-8}
[ "$BIG_POLLS" -ge 2 ] || BIG_POLLS=2
# 100 polls of the 5-item answer before memory is read, the memory target's measure.
SMALL_POLLS=100
# Scrapes of each process before its memory is read, so both have built
# whatever a scrape allocates.
WARM_SCRAPES=10
# poll.interval accepts any positive duration (below a minute only with a
# warning); 1ms makes polls run back to back.
FAST_INTERVAL=1ms
# One poll at startup and none while measuring.
IDLE_INTERVAL=1h

log() { printf '%s compare: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# --- Prerequisites ---------------------------------------------------------
# nginx lives in /usr/sbin, which an unprivileged user's PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"
missing=()
for tool in cargo curl gzip strip awk; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for tool in nginx wrk prometheus-node-exporter; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "missing: ${missing[*]}"
    log "install them (Debian, as root): apt-get update && apt-get install -y --no-install-recommends nginx wrk prometheus-node-exporter curl gzip binutils"
    log "(nginx-light works as well as nginx; cargo comes with rustup; the packages' services need not run)"
    exit 1
fi
if ! nginx -V 2>&1 | grep -q -- --with-http_gzip_static_module; then
    die "this nginx lacks gzip_static: apt-get install -y --no-install-recommends nginx (or nginx-light)"
fi

# --- Scratch space and shared functions ------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/pce-compare.XXXXXX")
# shellcheck source=benches/lib.sh
. benches/lib.sh

# --- Build -------------------------------------------------------------------
log "building the exporter and the fake upstream in release"
build_json=$work/build.json
# The exporter exactly as users build it. The upstream is a bench target,
# which turns on the dev-dependencies' features; built in the same target
# directory, the two builds would keep invalidating each other's library.
cargo build --release --locked --bin partner-center-exporter \
    --message-format=json-render-diagnostics >"$build_json"
cargo build --release --locked --bench compare_upstream \
    --target-dir "${CARGO_TARGET_DIR:-target}/compare-upstream" \
    --message-format=json-render-diagnostics >>"$build_json"
exporter_bin=$(executable_of partner-center-exporter)
upstream_bin=$(executable_of compare_upstream)
[ -x "$exporter_bin" ] || die "no exporter binary in cargo's output"
[ -x "$upstream_bin" ] || die "no compare_upstream binary in cargo's output"

# --- Fake Partner Center -----------------------------------------------------
log "building the $ITEMS-item answers and timing serde_json on them"
"$upstream_bin" serve --items "$ITEMS" --port-file "$work/upstream.port" >"$work/upstream.log" 2>&1 &
pids+=($!)
upstream_up() { [ -s "$work/upstream.port" ]; }
wait_for upstream_up 120 || die "the fake upstream did not start: $(cat "$work/upstream.log")"
upstream_port=$(cat "$work/upstream.port")
upstream_stats() { curl -sf "http://127.0.0.1:$upstream_port/_stats"; }
# The first value of a `key route values...` line of the upstream's stats.
stat_of() { upstream_stats | awk -v k="$1" -v r="$2" '$1 == k && $2 == r { print $3 }'; }
# All values of such a line, one per line.
stats_list() { upstream_stats | awk -v k="$1" -v r="$2" '$1 == k && $2 == r { for (i = 3; i <= NF; i++) print $i }'; }

# --- The exporter under test -------------------------------------------------
exporter_pid=
exporter_port=
# start_exporter NAME ROUTE INTERVAL: runs it against the upstream's ROUTE
# and waits for its first successful poll.
start_exporter() {
    local name=$1 route=$2 interval=$3 dir=$work/$1
    mkdir -p "$dir"
    echo "compare-token" >"$dir/token"
    cat >"$dir/config.yml" <<EOF
partner_center:
  base_url: http://127.0.0.1:$upstream_port/$route
  max_retries: 0
auth:
  bearer_token_file: token
poll:
  interval: $interval
  timeout: 2m
# The answers measured are license usage collections; the deployment
# source (two series) would only add a request the fake does not serve.
sources:
  license_deployment:
    enabled: false
EOF
    exporter_port=$(free_port)
    GLIBC_TUNABLES="$EXPORTER_GLIBC_TUNABLES" "$exporter_bin" --config.file="$dir/config.yml" \
        --web.listen-address="127.0.0.1:$exporter_port" --log.level=warn 2>"$dir/log" &
    exporter_pid=$!
    pids+=("$exporter_pid")
    # Through a file: grep -q leaving a pipe early would fail curl.
    exporter_up() {
        curl -sf -o "$work/up" "http://127.0.0.1:$exporter_port/metrics" &&
            grep -q '^partner_center_up{source="license_usage"} 1' "$work/up"
    }
    wait_for exporter_up 120 || die "exporter ($name) never polled successfully: $(tail -n 5 "$dir/log")"
}

# scrape URL [OUT [HEADERS]]: one GET, gzip asked, body kept raw.
scrape() { curl -sf -H 'Accept-Encoding: gzip' -o "${2:-/dev/null}" -D "${3:-/dev/null}" "$1"; }

# --- wrk ---------------------------------------------------------------------
# run_wrk OUT URL CONNECTIONS: keep-alive load with gzip asked, as Prometheus does.
run_wrk() {
    local out=$1 url=$2 connections=$3 threads=2
    [ "$connections" -ge 2 ] || threads=1
    wrk -t "$threads" -c "$connections" -d "${WRK_SECONDS}s" --timeout 10s --latency \
        -H 'Accept-Encoding: gzip' "$url" >"$out"
    if grep -q 'Non-2xx' "$out"; then
        die "wrk saw errors from $url: $(grep 'Non-2xx' "$out")"
    fi
    log "  $url, $connections conn: $(wrk_rps "$out") req/s, p50 $(wrk_ms "$out" 50) ms, p99 $(wrk_ms "$out" 99) ms $(grep 'Socket errors' "$out" || true)"
}

# --- nginx serving the same bytes ---------------------------------------------
mkdir -p "$work/www" "$work/nginx"
nginx_port=$(free_port)
# keep: copies the exporter's gzip answer (exactly the bytes it sends) to
# www/NAME/metrics.gz, and its decompressed text to www/NAME/metrics.
keep() {
    local name=$1 dir=$work/www/$1
    mkdir -p "$dir"
    scrape "http://127.0.0.1:$exporter_port/metrics" "$dir/metrics.gz" "$dir/headers"
    grep -qi '^content-encoding: gzip' "$dir/headers" || die "the exporter did not gzip /metrics ($name)"
    gzip -dc "$dir/metrics.gz" >"$dir/metrics"
}

# Checks that nginx sends exactly what the exporter sent, encoding included.
check_same_bytes() {
    local name=$1
    scrape "http://127.0.0.1:$nginx_port/$name/metrics" "$work/www/$name/nginx.gz" "$work/www/$name/nginx.headers"
    grep -qi '^content-encoding: gzip' "$work/www/$name/nginx.headers" || die "nginx did not send the gzip copy ($name)"
    cmp -s "$work/www/$name/metrics.gz" "$work/www/$name/nginx.gz" || die "nginx sent other bytes than the exporter ($name)"
}

# === 1. Memory after 100 polls of the 5-item answer, next to node_exporter ===
log "memory: $SMALL_POLLS polls of the 5-item answer, and node_exporter"
node_port=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$node_port" --log.level=warn \
    2>"$work/node-exporter.log" &
node_pid=$!
pids+=("$node_pid")
node_up() { curl -sf -o /dev/null "http://127.0.0.1:$node_port/metrics"; }
wait_for node_up 30 || die "node_exporter did not start: $(tail -n 5 "$work/node-exporter.log")"
for ((i = 0; i < WARM_SCRAPES; i++)); do
    scrape "http://127.0.0.1:$node_port/metrics"
done
start_exporter small-memory small "$FAST_INTERVAL"
# Scraped while the polls run, so memory is read close to the 100th.
for ((i = 0; i < WARM_SCRAPES; i++)); do
    scrape "http://127.0.0.1:$exporter_port/metrics"
done
small_polled() { [ "$(stat_of requests small)" -ge "$SMALL_POLLS" ]; }
wait_for small_polled 120 || die "the exporter did not poll $SMALL_POLLS times"
small_polls=$(stat_of requests small)
small_rss=$(kib "$exporter_pid" VmRSS)
small_hwm=$(kib "$exporter_pid" VmHWM)
node_rss=$(kib "$node_pid" VmRSS)
node_hwm=$(kib "$node_pid" VmHWM)
stop "$exporter_pid"
stop "$node_pid"

# === 2. Throughput, 5-item snapshot, 32 connections, against nginx ===========
log "throughput: 5-item snapshot, 32 connections, ${WRK_SECONDS}s each"
start_exporter small-throughput small "$IDLE_INTERVAL"
keep small
start_nginx small
check_same_bytes small
small_body_bytes=$(stat -c %s "$work/www/small/metrics.gz")
run_wrk "$work/wrk-small-exporter" "http://127.0.0.1:$exporter_port/metrics" 32
run_wrk "$work/wrk-small-nginx" "http://127.0.0.1:$nginx_port/small/metrics" 32
small_exporter_rps=$(wrk_rps "$work/wrk-small-exporter")
small_nginx_rps=$(wrk_rps "$work/wrk-small-nginx")
stop "$exporter_pid"

# === 3. Scrape p99 while 100k-item polls are decoded, against idle ===========
# The /repeat answer has $ITEMS items over the example's 5 series: the
# exporter decodes all of them, but the snapshot, and so each scrape, stays
# as small as in the idle case.
log "p99: scrapes idle, then while $ITEMS-item polls run back to back"
start_exporter repeat-idle repeat "$IDLE_INTERVAL"
run_wrk "$work/wrk-idle" "http://127.0.0.1:$exporter_port/metrics" 1
stop "$exporter_pid"
start_exporter repeat-busy repeat "$FAST_INTERVAL"
busy_polls_before=$(stat_of requests repeat)
run_wrk "$work/wrk-busy" "http://127.0.0.1:$exporter_port/metrics" 1
busy_polls=$(($(stat_of requests repeat) - busy_polls_before))
stop "$exporter_pid"
idle_p99=$(wrk_ms "$work/wrk-idle" 99)
busy_p99=$(wrk_ms "$work/wrk-busy" 99)
idle_p50=$(wrk_ms "$work/wrk-idle" 50)
busy_p50=$(wrk_ms "$work/wrk-busy" 50)

# === 4. 100k distinct series: poll cost, memory across repeated polls =========
log "memory and decode time: $BIG_POLLS polls of $ITEMS distinct series"
start_exporter distinct-polls distinct "$FAST_INTERVAL"
# Resident memory each time a new poll starts, i.e. after the previous one
# has published its snapshot.
big_rss=()
seen=$(stat_of requests distinct)
deadline=$((SECONDS + 300))
while [ "$seen" -le "$BIG_POLLS" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "the exporter did not poll $BIG_POLLS times in 300s"
    now=$(stat_of requests distinct)
    if [ "$now" -gt "$seen" ]; then
        seen=$now
        big_rss+=("$(kib "$exporter_pid" VmRSS)")
    fi
    sleep 0.05
done
big_poll_duration=$(curl -sf "http://127.0.0.1:$exporter_port/metrics" |
    awk '$1 == "partner_center_poll_duration_seconds{source=\"license_usage\"}" { printf "%.0f", $2 * 1000 }')
big_hwm_polls=$(kib "$exporter_pid" VmHWM)
stop "$exporter_pid"
mapfile -t gaps < <(stats_list gap_ms distinct)
parse_ms=$(stat_of parse_value_ms distinct)
big_answer_bytes=$(stat_of bytes distinct)
gap_median=$(printf '%s\n' "${gaps[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')

# === 5. Latency with a 100k-series snapshot, against nginx ====================
log "latency: $ITEMS-series snapshot, one connection, ${WRK_SECONDS}s each"
start_exporter distinct-latency distinct "$IDLE_INTERVAL"
keep big
check_same_bytes big
big_body_bytes=$(stat -c %s "$work/www/big/metrics.gz")
big_plain_bytes=$(stat -c %s "$work/www/big/metrics")
run_wrk "$work/wrk-big-exporter" "http://127.0.0.1:$exporter_port/metrics" 1
run_wrk "$work/wrk-big-nginx" "http://127.0.0.1:$nginx_port/big/metrics" 1
big_hwm_scrapes=$(kib "$exporter_pid" VmHWM)
stop "$exporter_pid"
big_exporter_p50=$(wrk_ms "$work/wrk-big-exporter" 50)
big_nginx_p50=$(wrk_ms "$work/wrk-big-nginx" 50)

# === 6. Binary size ===========================================================
cp "$exporter_bin" "$work/stripped"
strip "$work/stripped"
binary_bytes=$(stat -c %s "$work/stripped")

# === The table ================================================================
# ratio A B: A / B; verdict: PASS when every condition given holds.
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 >= b + 0) }'; }
verdict() { if "$@"; then echo PASS; else echo MISS; fi; }
both() { "$1" "$2" "$3" && "$4" "$5" "$6"; }

rows=()

r=$(ratio "$small_exporter_rps" "$small_nginx_rps")
row "/metrics throughput, 5-item snapshot, gzip, 32 conns" \
    "$(printf '%.0f vs nginx %.0f req/s (%s B)' "$small_exporter_rps" "$small_nginx_rps" "$small_body_bytes")" \
    "$r" ">= 0.8 x nginx" "$(verdict ge "$r" 0.8)"

r=$(ratio "$big_exporter_p50" "$big_nginx_p50")
row "/metrics median latency, $ITEMS series, gzip, 1 conn" \
    "$big_exporter_p50 vs nginx $big_nginx_p50 ms ($big_body_bytes B gz, $big_plain_bytes B plain)" \
    "$r" "<= 1.5 x nginx" "$(verdict le "$r" 1.5)"

r=$(ratio "$busy_p99" "$idle_p99")
row "scrape p99 during $ITEMS-item polls vs idle, 1 conn" \
    "$busy_p99 vs idle $idle_p99 ms (p50 $busy_p50 vs $idle_p50; $busy_polls polls during the run)" \
    "$r" "<= 2 x idle" "$(verdict le "$r" 2)"

r=$(ratio "$gap_median" "$parse_ms")
row "decode+snapshot+render, $ITEMS items (upstream gap)" \
    "$gap_median vs serde_json Value $parse_ms ms (${#gaps[@]} polls, $big_answer_bytes B; poll_duration ${big_poll_duration} ms)" \
    "$r" "<= 3 x serde_json" "$(verdict le "$r" 3)"

# Criterion's results, when its benches have been run in this tree
# (`cargo bench` with the decode/snapshot/render benches): each benchmark
# of the large answer next to the same serde_json yardstick, for reading.
criterion_dir=${CARGO_TARGET_DIR:-target}/criterion
criterion_rows=0
if [ -d "$criterion_dir" ]; then
    while IFS= read -r estimates; do
        id=${estimates#"$criterion_dir"/}
        id=${id%/new/estimates.json}
        # The median's point estimate, in nanoseconds, in criterion's JSON.
        ms=$(tr -d '\n ' <"$estimates" | awk '{
            i = index($0, "\"median\":"); if (!i) exit
            s = substr($0, i)
            if (match(s, /"point_estimate":[0-9.eE+-]+/)) printf "%.3f", substr(s, RSTART + 17, RLENGTH - 17) / 1e6 }')
        [ -n "$ms" ] || continue
        row "criterion: $id" "$ms ms (median)" "$(ratio "$ms" "$parse_ms")" "(sum <= 3 x serde_json)" "info"
        criterion_rows=$((criterion_rows + 1))
    done < <(find "$criterion_dir" -path '*/new/estimates.json' | grep -E '100000|100k|100_000' | sort)
fi
if [ "$criterion_rows" -eq 0 ]; then
    row "criterion: decode/snapshot/render, 100k" "no results in $criterion_dir" "-" "(sum <= 3 x serde_json)" "info"
fi

r=$(ratio "$small_rss" "$node_rss")
row "RSS after $small_polls polls of 5 items" \
    "$(mib "$small_rss") MiB (HWM $(mib "$small_hwm")) vs node_exporter $(mib "$node_rss") MiB (HWM $(mib "$node_hwm"))" \
    "$r" "<= 10 MiB, <= 0.75 x node_exp." "$(verdict both le "$small_rss" 10240 le "$r" 0.75)"

big_hwm=$big_hwm_polls
[ "$big_hwm_scrapes" -le "$big_hwm" ] || big_hwm=$big_hwm_scrapes
# Flat: the last poll leaves no more than 10% above the second (the first
# may still be growing the allocator's pools).
r=$(ratio "${big_rss[-1]}" "${big_rss[1]}")
rss_list=$(for k in "${big_rss[@]}"; do mib "$k"; echo -n " "; done)
row "peak RSS, $ITEMS series, repeated polls" \
    "HWM $(mib "$big_hwm") MiB (polls $(mib "$big_hwm_polls"), scrapes $(mib "$big_hwm_scrapes")); after each poll: ${rss_list% }" \
    "$r" "<= 100 MiB; last <= 1.1 x 2nd" "$(verdict both le "$big_hwm" 102400 le "$r" 1.1)"

row "stripped release binary" "$(mib $((binary_bytes / 1024))) MiB ($binary_bytes B)" "-" "<= 10 MiB" \
    "$(verdict le "$binary_bytes" $((10 * 1024 * 1024)))"

echo
echo "| what | measured | ratio | target | verdict |"
echo "|---|---|---|---|---|"
for line in "${rows[@]}"; do
    IFS='|' read -r what measured r target v <<<"$line"
    echo "| $what | $measured | $r | $target | $v |"
done
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
echo "tools: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n 1 | awk '{ print "wrk " $2 }'), $(prometheus-node-exporter --version 2>&1 | head -n 1 | awk '{ print "node_exporter", $3 }')"
echo "wrk: ${WRK_SECONDS}s per run, Accept-Encoding: gzip, keep-alive"
echo "exporter: GLIBC_TUNABLES=${EXPORTER_GLIBC_TUNABLES:-(none)}"
