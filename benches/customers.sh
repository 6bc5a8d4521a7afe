#!/usr/bin/env bash
# Performance of the per-customer source (customer_licenses) with a large
# partner: builds the exporter in release, runs it against a fake Partner
# Center with CUSTOMERS customers of SKUS subscribed SKUs each
# (`compare_upstream customers`, benches/compare_upstream/customers.rs),
# and measures a poll's wall and CPU time, the exporter's memory, and its
# scrapes next to nginx serving the same /metrics bytes, with wrk as the
# load; then, under a request budget, the rate the exporter achieves.
# The exporter is a black box here: its binary, a config file, its log,
# /metrics, /proc/PID/stat and /proc/PID/status.
#
# Not part of `cargo test` or .ci/run. Run it from anywhere:
#   benches/customers.sh
# Knobs (environment):
#   CUSTOMERS (5000), SKUS (8, at most 17), PAGE_SIZE (100, customers.page_size;
#   the listing must fit in partner_center.max_pages, 100, pages),
#   POLLS (4, polls at least, back to back, of the unbudgeted run),
#   CONCURRENCY (4), HIGH_CONCURRENCY (16; empty skips that run),
#   BUDGET (600 requests a minute; 0 skips that run), BUDGET_CUSTOMERS
#   (1200: about two minutes at 600 a minute), WRK_SECONDS (10),
#   EXPORTER_GLIBC_TUNABLES (by default the GLIBC_TUNABLES the Dockerfile
#   and the systemd unit set; empty for none).
# With the defaults it takes about three minutes once built. Needs: cargo,
# curl, gzip, awk, nginx (with gzip_static), wrk; promtool, when present,
# checks the scraped page. Everything it starts listens on 127.0.0.1 only
# and is stopped on exit; its files live in one temporary directory,
# removed on exit.
#
# How each figure is measured:
# - poll wall time: the exporter's own duration_seconds of each
#   customer_licenses "poll succeeded" log line (the listing, every
#   customer's request, the snapshot built and rendered);
# - poll CPU: utime + stime of the exporter (all threads) from
#   /proc/PID/stat, sampled when each poll's log line appears; the first
#   poll's includes the start-up (a few milliseconds), and polls during
#   the busy wrk run also include serving its scrapes, so the figures
#   given are the first poll's and the last one's (started after wrk);
# - peak RSS: VmHWM after every poll and scrape of the run;
# - steady RSS: VmRSS once the exporter sits idle after its last complete
#   poll (the fake then leaves every listing request unanswered, so no
#   further poll gets past its first page) and WARM_SCRAPES scrapes;
# - scrape p99 during a poll vs idle: wrk, one connection (as Prometheus
#   scrapes), gzip asked, while polls run back to back, then on the idle
#   exporter with the same snapshot;
# - latency vs nginx: the idle run above against nginx serving the very
#   gzip bytes the exporter sent (gzip_static), one connection each;
# - achieved rate: the fake's arrival times of every Partner Center
#   request of one budgeted poll, without its first and last TRIM_SECONDS
#   (the steady part), as requests a minute and a share of the budget.
set -euo pipefail

cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-5000}
SKUS=${SKUS:-8}
PAGE_SIZE=${PAGE_SIZE:-100}
POLLS=${POLLS:-4}
[ "$POLLS" -ge 2 ] || POLLS=2
CONCURRENCY=${CONCURRENCY:-4}
HIGH_CONCURRENCY=${HIGH_CONCURRENCY-16}
BUDGET=${BUDGET:-600}
BUDGET_CUSTOMERS=${BUDGET_CUSTOMERS:-1200}
WRK_SECONDS=${WRK_SECONDS:-10}
EXPORTER_GLIBC_TUNABLES=${EXPORTER_GLIBC_TUNABLES-$(sed -n 's/^ENV GLIBC_TUNABLES=//p' deploy/docker/Dockerfile)}
# Scrapes before the steady memory is read, so it includes what a scrape keeps.
WARM_SCRAPES=10
# The budgeted run's rate leaves out this much at either end: the first
# requests start at once, and the last poll's tail may be short.
TRIM_SECONDS=5
# poll.interval and the sources' intervals accept any positive duration;
# 1ms makes polls run back to back, 1h makes one at startup only.
FAST_INTERVAL=1ms
IDLE_INTERVAL=1h

log() { printf '%s customers: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# --- Prerequisites ---------------------------------------------------------
# nginx lives in /usr/sbin, which an unprivileged user's PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"
missing=()
for tool in cargo curl gzip awk getconf nginx wrk; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "missing: ${missing[*]}"
    log "install them (Debian, as root): apt-get update && apt-get install -y --no-install-recommends nginx wrk curl gzip"
    exit 1
fi
if ! nginx -V 2>&1 | grep -q -- --with-http_gzip_static_module; then
    die "this nginx lacks gzip_static: apt-get install -y --no-install-recommends nginx (or nginx-light)"
fi

# --- Scratch space and shared functions ------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/pce-customers.XXXXXX")
# shellcheck source=benches/lib.sh
. benches/lib.sh

# --- Build -------------------------------------------------------------------
log "building the exporter and the fake upstream in release"
build_json=$work/build.json
# As benches/compare.sh builds them: the exporter as users build it, the
# upstream (a bench target, with the dev-dependencies' features) in a
# target directory of its own, so the two do not invalidate each other.
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
upstream_pid=
upstream_port=
# start_upstream NAME CUSTOMERS: a fresh fake partner (a fresh record, no hang).
start_upstream() {
    local dir=$work/$1
    mkdir -p "$dir"
    "$upstream_bin" customers --customers "$2" --skus "$SKUS" --port-file "$dir/upstream.port" \
        >"$dir/upstream.log" 2>&1 &
    upstream_pid=$!
    pids+=("$upstream_pid")
    upstream_up() { [ -s "$dir/upstream.port" ]; }
    wait_for upstream_up 60 || die "the fake upstream did not start: $(cat "$dir/upstream.log")"
    upstream_port=$(cat "$dir/upstream.port")
}
upstream_get() { curl -sf "http://127.0.0.1:$upstream_port/$1"; }
stat_of() { upstream_get _stats | awk -v k="$1" '$1 == k { print $2 }'; }

# --- The exporter under test -------------------------------------------------
exporter_pid=
exporter_port=
exporter_log=
# start_exporter NAME INTERVAL BUDGET CONCURRENCY: the customer_licenses
# source alone against the fake.
start_exporter() {
    local name=$1 dir=$work/$1
    mkdir -p "$dir"
    echo "customers-token" >"$dir/token"
    cat >"$dir/config.yml" <<EOF
partner_center:
  base_url: http://127.0.0.1:$upstream_port
  max_retries: 0
  # A listing the fake leaves unanswered must not fail the poll while the
  # idle exporter is measured.
  request_timeout: 5m
  max_requests_per_minute: $3
  max_concurrent_requests: $4
auth:
  bearer_token_file: token
poll:
  # A budgeted poll of BUDGET_CUSTOMERS takes minutes.
  timeout: 30m
customers:
  page_size: $PAGE_SIZE
sources:
  license_usage:
    enabled: false
  license_deployment:
    enabled: false
  customer_licenses:
    enabled: true
    interval: $2
EOF
    exporter_port=$(free_port)
    exporter_log=$dir/log
    GLIBC_TUNABLES="$EXPORTER_GLIBC_TUNABLES" "$exporter_bin" --config.file="$dir/config.yml" \
        --web.listen-address="127.0.0.1:$exporter_port" --log.level=info 2>"$exporter_log" &
    exporter_pid=$!
    pids+=("$exporter_pid")
}
# The customer_licenses polls that succeeded so far, and their durations.
polls_done() { grep 'poll succeeded' "$exporter_log" | grep -c 'source=customer_licenses' || true; }
poll_durations() {
    grep 'poll succeeded' "$exporter_log" | grep 'source=customer_licenses' |
        sed -n 's/.*duration_seconds=\([0-9.e+-]*\).*/\1/p'
}
exporter_failed() { grep -E 'level=(warn|error)' "$exporter_log" | tail -n 3; }
# wait_polls N LIMIT: waits until N polls have succeeded, noting the
# exporter's CPU ticks and VmRSS when each one's line appears.
poll_ticks=()
poll_rss=()
wait_polls() {
    local want=$1 deadline=$((SECONDS + $2)) seen
    seen=${#poll_ticks[@]}
    while [ "$seen" -lt "$want" ]; do
        [ "$SECONDS" -le "$deadline" ] || die "only $seen of $want polls succeeded in $2 s: $(exporter_failed)"
        kill -0 "$exporter_pid" 2>/dev/null || die "the exporter exited: $(tail -n 5 "$exporter_log")"
        local now
        now=$(polls_done)
        while [ "$seen" -lt "$now" ]; do
            poll_ticks+=("$(cpu_ticks "$exporter_pid")")
            poll_rss+=("$(kib "$exporter_pid" VmRSS)")
            seen=$((seen + 1))
        done
        sleep 0.02
    done
}

# scrape URL [OUT [HEADERS]]: one GET, gzip asked, body kept raw.
scrape() { curl -sf -H 'Accept-Encoding: gzip' -o "${2:-/dev/null}" -D "${3:-/dev/null}" "$1"; }

# --- wrk ---------------------------------------------------------------------
# run_wrk OUT URL: one keep-alive connection with gzip asked, as Prometheus scrapes.
run_wrk() {
    local out=$1 url=$2
    wrk -t 1 -c 1 -d "${WRK_SECONDS}s" --timeout 10s --latency \
        -H 'Accept-Encoding: gzip' "$url" >"$out"
    if grep -q 'Non-2xx' "$out"; then
        die "wrk saw errors from $url: $(grep 'Non-2xx' "$out")"
    fi
}
wrk_summary() { echo "$(wrk_rps "$1") req/s, p50 $(wrk_ms "$1" 50) ms, p99 $(wrk_ms "$1" 99) ms"; }

# --- nginx serving the same bytes ---------------------------------------------
mkdir -p "$work/www/big" "$work/nginx"
nginx_port=$(free_port)

# === 1. CUSTOMERS customers, no budget: polls back to back, then idle =========
pages=$(((CUSTOMERS + PAGE_SIZE - 1) / PAGE_SIZE))
log "$CUSTOMERS customers x $SKUS SKUs, no budget, $CONCURRENCY in flight: polls back to back"
start_upstream main "$CUSTOMERS"
sku_bytes=$(stat_of sku_bytes)
start_exporter main "$FAST_INTERVAL" 0 "$CONCURRENCY"
wait_polls 1 300
log "  first poll: $(poll_durations | head -n 1) s"
# The scrapes while polls run: the snapshot is the first poll's, replaced
# by each later poll's.
polls_before_wrk=$(polls_done)
run_wrk "$work/wrk-busy" "http://127.0.0.1:$exporter_port/metrics" &
wrk_pid=$!
pids+=("$wrk_pid")
# Each poll's end is noted as it comes, for its CPU time and memory.
while kill -0 "$wrk_pid" 2>/dev/null; do
    wait_polls "$(polls_done)" 5
    sleep 0.02
done
wait "$wrk_pid" || die "wrk failed during the polls"
stop "$wrk_pid"
wait_polls "$(polls_done)" 5
polls_during_wrk=$(($(polls_done) - polls_before_wrk))
log "  during the polls: $(wrk_summary "$work/wrk-busy") ($polls_during_wrk polls ended during the run)"
[ "$polls_during_wrk" -ge 1 ] || log "  (no poll ended during the wrk run: WRK_SECONDS is shorter than a poll)"
# At least POLLS polls, and the last one started after wrk had ended, so
# its CPU time has no scrapes in it.
after_wrk=$((${#poll_ticks[@]} + 1))
[ "$after_wrk" -ge "$POLLS" ] || after_wrk=$POLLS
wait_polls "$after_wrk" 300
# From now on the fake leaves every listing request unanswered: the poll
# under way, if past its listing, ends; the next one waits on its first
# page, and the exporter sits idle with the last poll's snapshot.
upstream_get _hang >/dev/null
hang_armed() { [ -n "$(stat_of hang_armed_at)" ]; }
wait_for hang_armed 10 || die "the fake upstream did not arm the hang"
armed_at=$(stat_of hang_armed_at)
hung() { [ "$(stat_of listing_requests)" -gt "$armed_at" ]; }
wait_for hung 300 || die "the exporter did not start another poll"
wait_polls "$(polls_done)" 5
sleep 1
mapfile -t durations < <(poll_durations)
main_polls=${#durations[@]}
# The CPU ticks of each poll: from the previous poll's end (or the start).
cpu_of_poll() {
    local i=$1 prev=0
    [ "$i" -eq 0 ] || prev=${poll_ticks[$((i - 1))]}
    seconds_of_ticks $((poll_ticks[i] - prev))
}
first_cpu=$(cpu_of_poll 0)
last_cpu=$(cpu_of_poll $((main_polls - 1)))
first_poll=$(printf '%.2f' "${durations[0]}")
last_poll=$(printf '%.2f' "${durations[$((main_polls - 1))]}")
poll_list=$(printf '%.2f ' "${durations[@]}")
cpu_list=$(for ((i = 0; i < main_polls; i++)); do printf '%s ' "$(cpu_of_poll "$i")"; done)
rss_list=$(for k in "${poll_rss[@]}"; do printf '%s ' "$(mib "$k")"; done)

log "  idle: $WARM_SCRAPES scrapes, the page kept for nginx, then wrk against both"
for ((i = 0; i < WARM_SCRAPES; i++)); do
    scrape "http://127.0.0.1:$exporter_port/metrics"
done
steady_rss=$(kib "$exporter_pid" VmRSS)
dir=$work/www/big
scrape "http://127.0.0.1:$exporter_port/metrics" "$dir/metrics.gz" "$dir/headers"
grep -qi '^content-encoding: gzip' "$dir/headers" || die "the exporter did not gzip /metrics"
gzip -dc "$dir/metrics.gz" >"$dir/metrics"
body_gz=$(stat -c %s "$dir/metrics.gz")
body_plain=$(stat -c %s "$dir/metrics")
sku_series=$(grep -c '^partner_center_customer_licenses_consumed{' "$dir/metrics" || true)
customer_series=$(grep -c '^partner_center_customer_info{' "$dir/metrics" || true)
all_series=$(grep -vc '^#' "$dir/metrics" || true)
# The exporter's own account of its last poll, beside its log's.
metric_poll=$(awk '$1 == "partner_center_poll_duration_seconds{source=\"customer_licenses\"}" { printf "%.2f", $2 }' "$dir/metrics")
[ "$sku_series" -eq $((CUSTOMERS * SKUS)) ] ||
    die "the page has $sku_series SKUs, not $((CUSTOMERS * SKUS)): $(exporter_failed)"
promtool_verdict="promtool not installed"
if command -v promtool >/dev/null 2>&1; then
    if promtool check metrics <"$dir/metrics" >"$work/promtool" 2>&1; then
        promtool_verdict="promtool check metrics: no problems"
    else
        promtool_verdict="promtool check metrics: $(grep -c . "$work/promtool") lines of problems, first: $(head -n 1 "$work/promtool")"
    fi
fi
start_nginx big
scrape "http://127.0.0.1:$nginx_port/big/metrics" "$dir/nginx.gz" "$dir/nginx.headers"
grep -qi '^content-encoding: gzip' "$dir/nginx.headers" || die "nginx did not send the gzip copy"
cmp -s "$dir/metrics.gz" "$dir/nginx.gz" || die "nginx sent other bytes than the exporter"
run_wrk "$work/wrk-idle" "http://127.0.0.1:$exporter_port/metrics"
log "  idle exporter: $(wrk_summary "$work/wrk-idle")"
run_wrk "$work/wrk-nginx" "http://127.0.0.1:$nginx_port/big/metrics"
log "  nginx, same bytes: $(wrk_summary "$work/wrk-nginx")"
peak_rss=$(kib "$exporter_pid" VmHWM)
stop "$exporter_pid"
stop "$upstream_pid"
busy_p99=$(wrk_ms "$work/wrk-busy" 99)
busy_p50=$(wrk_ms "$work/wrk-busy" 50)
idle_p99=$(wrk_ms "$work/wrk-idle" 99)
idle_p50=$(wrk_ms "$work/wrk-idle" 50)
nginx_p50=$(wrk_ms "$work/wrk-nginx" 50)
nginx_p99=$(wrk_ms "$work/wrk-nginx" 99)

# === 2. The same partner, HIGH_CONCURRENCY in flight: one poll ================
if [ -n "$HIGH_CONCURRENCY" ]; then
    log "$CUSTOMERS customers, no budget, $HIGH_CONCURRENCY in flight: one poll"
    start_upstream high "$CUSTOMERS"
    start_exporter high "$IDLE_INTERVAL" 0 "$HIGH_CONCURRENCY"
    poll_ticks=()
    poll_rss=()
    wait_polls 1 300
    high_poll=$(printf '%.2f' "$(poll_durations | head -n 1)")
    high_cpu=$(seconds_of_ticks "${poll_ticks[0]}")
    sleep 1
    high_rss=$(kib "$exporter_pid" VmRSS)
    high_hwm=$(kib "$exporter_pid" VmHWM)
    log "  poll $high_poll s, CPU $high_cpu s"
    stop "$exporter_pid"
    stop "$upstream_pid"
fi

# === 3. BUDGET_CUSTOMERS customers under a budget: the achieved rate ===========
if [ "$BUDGET" -gt 0 ]; then
    budget_requests=$((BUDGET_CUSTOMERS + (BUDGET_CUSTOMERS + PAGE_SIZE - 1) / PAGE_SIZE))
    expected=$((budget_requests * 60 / BUDGET))
    log "$BUDGET_CUSTOMERS customers, $BUDGET requests a minute, $CONCURRENCY in flight: one poll (about $expected s)"
    start_upstream budget "$BUDGET_CUSTOMERS"
    start_exporter budget "$IDLE_INTERVAL" "$BUDGET" "$CONCURRENCY"
    poll_ticks=()
    poll_rss=()
    wait_polls 1 $((expected * 2 + 60))
    budget_poll=$(printf '%.1f' "$(poll_durations | head -n 1)")
    upstream_get _arrivals >"$work/arrivals"
    stop "$exporter_pid"
    stop "$upstream_pid"
    # The rate between the first and the last request of the steady part:
    # (requests - 1) / (last - first).
    read -r rate window counted < <(tr ' ' '\n' <"$work/arrivals" | tail -n +2 | sort -g |
        awk -v trim="$TRIM_SECONDS" '
            { t[NR] = $1 }
            END {
                lo = t[1] + trim; hi = t[NR] - trim; n = 0
                for (i = 1; i <= NR; i++) if (t[i] >= lo && t[i] <= hi) { if (!n) first = t[i]; last = t[i]; n++ }
                if (n > 1 && last > first) printf "%.1f %.1f %d\n", (n - 1) * 60 / (last - first), last - first, n
                else print "0 0 0"
            }')
    budget_share=$(awk -v r="$rate" -v b="$BUDGET" 'BEGIN { printf "%.1f", r * 100 / b }')
    log "  $rate requests a minute over ${window}s ($counted requests): $budget_share % of the budget"
fi

# === The table ================================================================
between() { awk -v a="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(a + 0 >= lo + 0 && a + 0 <= hi + 0) }'; }
verdict() { if "$@"; then echo PASS; else echo FAIL; fi; }

rows=()

row "poll wall time, $CUSTOMERS x $SKUS, $CONCURRENCY in flight, no budget" \
    "first $first_poll s, last $last_poll s (metric: $metric_poll s; all: ${poll_list% }; $(mib $((sku_bytes / 1024))) MiB of SKU answers a poll)" \
    "-" "<= 30 s" "$(verdict le "$first_poll" 30)"
row "poll CPU time, $CONCURRENCY in flight" \
    "first $first_cpu s, last $last_cpu s (all, scrapes of the busy run included: ${cpu_list% })" \
    "-" "-" "info"
if [ -n "$HIGH_CONCURRENCY" ]; then
    row "poll, $HIGH_CONCURRENCY in flight" \
        "$high_poll s, CPU $high_cpu s; RSS after it $(mib "$high_rss") MiB, HWM $(mib "$high_hwm") MiB" \
        "$(ratio "$high_poll" "$first_poll")" "<= 30 s" "$(verdict le "$high_poll" 30)"
fi
row "peak RSS (VmHWM), $main_polls polls and every scrape" \
    "$(mib "$peak_rss") MiB; VmRSS after each poll: ${rss_list% }" \
    "-" "<= 150 MiB" "$(verdict le "$peak_rss" $((150 * 1024)))"
row "steady RSS, idle after the last poll and $WARM_SCRAPES scrapes" \
    "$(mib "$steady_rss") MiB" "-" "<= 80 MiB" "$(verdict le "$steady_rss" $((80 * 1024)))"
r=$(ratio "$busy_p99" "$idle_p99")
row "scrape p99 during polls vs idle, 1 conn" \
    "$busy_p99 vs idle $idle_p99 ms (p50 $busy_p50 vs $idle_p50; $polls_during_wrk polls ended during the run)" \
    "$r" "<= 2 x idle" "$(verdict le "$r" 2)"
r=$(ratio "$idle_p50" "$nginx_p50")
row "scrape median latency vs nginx, same bytes, 1 conn" \
    "$idle_p50 vs nginx $nginx_p50 ms (p99 $idle_p99 vs $nginx_p99; $body_gz B gz, $body_plain B plain, $all_series series)" \
    "$r" "<= 1.5 x nginx (compare.sh's)" "$(verdict le "$r" 1.5)"
row "the scraped page" "$sku_series SKUs, $customer_series customers; $promtool_verdict" "-" "-" "info"
if [ "$BUDGET" -gt 0 ]; then
    row "achieved rate, budget $BUDGET/min, $BUDGET_CUSTOMERS customers" \
        "$rate/min over ${window} s ($counted requests; poll $budget_poll s)" \
        "$budget_share %" "95-100 % of the budget" "$(verdict between "$budget_share" 95 100)"
fi

echo
echo "| what | measured | ratio | target | verdict |"
echo "|---|---|---|---|---|"
for line in "${rows[@]}"; do
    IFS='|' read -r what measured r target v <<<"$line"
    echo "| $what | $measured | $r | $target | $v |"
done
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
echo "tools: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n 1 | awk '{ print "wrk " $2 }')"
echo "wrk: ${WRK_SECONDS}s per run, 1 connection, Accept-Encoding: gzip, keep-alive"
echo "exporter: GLIBC_TUNABLES=${EXPORTER_GLIBC_TUNABLES:-(none)}; customers.page_size $PAGE_SIZE"
