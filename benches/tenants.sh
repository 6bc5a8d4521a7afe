#!/usr/bin/env bash
# How far one exporter process goes with several partner tenants: builds
# the exporter in release, runs it with TENANTS tenants of CUSTOMERS
# customers (SKUS subscribed SKUs and as many subscriptions each) with
# every source enabled, each tenant against a fake Partner Center of its
# own (`compare_upstream tenants`, benches/compare_upstream/tenants.rs:
# one process, a port per tenant), without a request budget, and measures
# a round of polls (every source of every tenant: wall time and CPU
# seconds), the exporter's memory, the size of /metrics and the scrape
# latency while idle and while a round runs. It then states what a real
# request budget makes of one tenant's round. The exporter is a black box
# here: its binary, a config file, its log, /metrics, /proc/PID/stat and
# /proc/PID/status.
#
# Not part of `cargo test` or .ci/run. Run it from anywhere:
#   benches/tenants.sh
#   TENANTS=5 benches/tenants.sh
# Knobs (environment):
#   TENANTS (20), CUSTOMERS (500, per tenant), SKUS (4, at most 17: per
#   customer, each with one subscription), PAGE_SIZE (100, customers.page_size),
#   CONCURRENCY (4, partner_center.max_concurrent_requests per tenant),
#   INTERVAL (120s: the per-customer sources' interval, a full round
#   every INTERVAL; the partner-level sources poll every INTERVAL / 2),
#   SCRAPES (200, sequential scrapes of the idle exporter), BUDGET (300:
#   the requests a minute the last row prices one tenant's round at; the
#   measured runs have no budget), EXPORTER_GLIBC_TUNABLES (by default the
#   GLIBC_TUNABLES the Dockerfile sets, none; empty for none), KEEP (a
#   directory: the exporter's config and log, the fake's counts and the
#   scrape times are copied there).
# With the defaults it takes about five minutes once built. Needs: cargo,
# curl, gzip, awk, getconf, GNU date; promtool, when present, checks the
# scraped page once the measurements are over. Everything it starts
# listens on 127.0.0.1 only and is stopped on exit; its files live in one
# temporary directory, removed on exit.
#
# What runs, every INTERVAL / 2 from the start, all tenants together (the
# sources of one kind share their interval and start at once):
#   0        full round 1, cold: the first poll of every source, with one
#            provisioning-status lookup per subscription (the state_dir
#            is new); then, idle: the steady memory, the page, and SCRAPES
#            scrapes;
#   I/2      the partner-level sources alone (2 requests and 7 series a
#            tenant): what a small poll costs in a large process;
#   I        full round 2, warm: the lookups are known, so a round costs
#            the listing, two requests per customer and the reports; then
#            the steady memory again;
#   3I/2     the partner-level sources alone, again;
#   2I       full round 3, warm, while curl scrapes /metrics back to back
#            on one connection.
#
# How each figure is measured:
# - wall time: from the earliest start (a "poll succeeded" line's ts less
#   its duration_seconds) to the latest end among the lines of the round,
#   one per source and tenant; "longest" is the longest single poll;
# - CPU: utime + stime of the exporter (all threads) from /proc/PID/stat,
#   read just before a round starts and when its last poll line appears
#   (round 1's from the process's start); the fake's beside it, as it
#   shares the machine;
# - peak RSS: VmHWM at the end, covering everything; steady RSS: VmRSS
#   once idle after a round and WARM_SCRAPES scrapes;
# - the page: one plain and one gzip scrape of the idle exporter after
#   round 1: bytes, samples (lines that are not comments), tenants named;
# - scrape latency: curl's time_total per transfer, gzip asked, one
#   keep-alive connection, the body read whole and dropped; SCRAPES in a
#   row on the idle exporter (with the CPU they cost), and back to back
#   through round 3, counting those that started within it; median and
#   p99 (nearest rank);
# - requests: the fake's count per tenant and kind, per round.
set -euo pipefail

cd "$(dirname "$0")/.."

TENANTS=${TENANTS:-20}
CUSTOMERS=${CUSTOMERS:-500}
SKUS=${SKUS:-4}
PAGE_SIZE=${PAGE_SIZE:-100}
CONCURRENCY=${CONCURRENCY:-4}
INTERVAL=${INTERVAL:-120}
INTERVAL=${INTERVAL%s}
SCRAPES=${SCRAPES:-200}
BUDGET=${BUDGET:-300}
KEEP=${KEEP:-}
EXPORTER_GLIBC_TUNABLES=${EXPORTER_GLIBC_TUNABLES-$(sed -n 's/^ENV GLIBC_TUNABLES=//p' deploy/docker/Dockerfile)}
# Scrapes before the steady memory is read, so it includes what a scrape keeps.
WARM_SCRAPES=10
# Scrapes per curl run while a round runs: the loop checks between runs
# whether the round has ended.
BUSY_BATCH=10
# The sources, in two kinds by their interval.
PARTNER_SOURCES="license_usage license_deployment"
CUSTOMER_SOURCES="customer_licenses customer_usage customer_deployment subscriptions"

log() { printf '%s tenants: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# --- Prerequisites ---------------------------------------------------------
missing=()
for tool in cargo curl gzip awk getconf date; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "missing: ${missing[*]}"
    log "install them (Debian, as root): apt-get update && apt-get install -y --no-install-recommends curl gzip"
    exit 1
fi
[ "$TENANTS" -ge 1 ] || die "TENANTS must be at least 1"
[ "$INTERVAL" -ge 20 ] && [ $((INTERVAL % 2)) -eq 0 ] || die "INTERVAL must be an even number of seconds, at least 20"
HALF=$((INTERVAL / 2))
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Scratch space and shared functions ------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/pce-tenants.XXXXXX")
# shellcheck source=benches/lib.sh
. benches/lib.sh
now() { date +%s.%N; }

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

# --- Fake Partner Centers ----------------------------------------------------
log "building $TENANTS fake partners of $CUSTOMERS customers x $SKUS SKUs"
"$upstream_bin" tenants --tenants "$TENANTS" --customers "$CUSTOMERS" --skus "$SKUS" \
    --port-file "$work/upstream.ports" >"$work/upstream.log" 2>&1 &
upstream_pid=$!
pids+=("$upstream_pid")
upstream_up() { [ -s "$work/upstream.ports" ]; }
wait_for upstream_up 600 || die "the fake upstream did not start: $(cat "$work/upstream.log")"
mapfile -t ports <"$work/upstream.ports"
[ "${#ports[@]}" -eq "$TENANTS" ] || die "the fake listens on ${#ports[@]} ports, not $TENANTS"
tenant_name() { printf 't%02d' $(($1 + 1)); }
# stats_all FILE: every tenant's counts, as `tenant key value` lines.
stats_all() {
    local i
    for ((i = 0; i < TENANTS; i++)); do
        curl -sf "http://127.0.0.1:${ports[$i]}/_stats" | sed "s/^/$(tenant_name "$i") /"
    done >"$1"
}
# stat_sum FILE KEY [TENANT]: a count summed over tenants, or one tenant's.
stat_sum() { awk -v k="$2" -v t="${3:-}" '$2 == k && (t == "" || $1 == t) { s += $3 } END { print s + 0 }' "$1"; }
# requests_between BEFORE AFTER [TENANT]: the requests from one reading to the next.
requests_between() { echo $(($(stat_sum "$2" requests "${3:-}") - $(stat_sum "$1" requests "${3:-}"))); }
: >"$work/stats0"

# --- The exporter under test -------------------------------------------------
mkdir -p "$work/exporter"
echo "tenants-token" >"$work/exporter/token"
{
    cat <<EOF
# Every tenant inherits all of this; each entry names its own fake.
partner_center:
  max_retries: 0
  request_timeout: 2m
  # The process's own cost: no budget.
  max_requests_per_minute: 0
  max_concurrent_requests: $CONCURRENCY
poll:
  interval: ${HALF}s
  timeout: 10m
customers:
  page_size: $PAGE_SIZE
sources:
EOF
    for source in $PARTNER_SOURCES; do
        printf '  %s: { enabled: true, interval: %ss }\n' "$source" "$HALF"
    done
    for source in $CUSTOMER_SOURCES; do
        printf '  %s: { enabled: true, interval: %ss }\n' "$source" "$INTERVAL"
    done
    echo "state_dir: $work/exporter/state"
    echo "tenants:"
    for ((i = 0; i < TENANTS; i++)); do
        printf '  - name: %s\n    partner_center: { base_url: "http://127.0.0.1:%s" }\n    auth: { bearer_token_file: %s }\n' \
            "$(tenant_name "$i")" "${ports[$i]}" "$work/exporter/token"
    done
} >"$work/exporter/config.yml"
exporter_port=$(free_port)
exporter_log=$work/exporter/log
exporter_url=http://127.0.0.1:$exporter_port/metrics
"$exporter_bin" --config.file="$work/exporter/config.yml" --config.check >"$work/exporter/check" 2>&1 ||
    die "--config.check refused the configuration: $(tail -n 5 "$work/exporter/check")"
log "starting the exporter: $TENANTS tenants, the per-customer sources every ${INTERVAL}s, the partner-level ones every ${HALF}s, no budget"
GLIBC_TUNABLES="$EXPORTER_GLIBC_TUNABLES" "$exporter_bin" --config.file="$work/exporter/config.yml" \
    --web.listen-address="127.0.0.1:$exporter_port" --log.level=info 2>"$exporter_log" &
exporter_pid=$!
pids+=("$exporter_pid")
started_at=$(now)
upstream_start_ticks=$(cpu_ticks "$upstream_pid")

# --- Reading the polls from the log -------------------------------------------
# The "poll succeeded" lines of one kind of source, in the order they came.
kind_regex() { echo "source=($(echo "$1" | tr ' ' '|'))( |\$)"; }
partner_regex=$(kind_regex "$PARTNER_SOURCES")
customer_regex=$(kind_regex "$CUSTOMER_SOURCES")
poll_lines() { grep 'poll succeeded' "$exporter_log" | grep -E "$1" || true; }
count_of() { poll_lines "$1" | wc -l; }
# Polls of each kind per round, all tenants together.
partner_polls=$((TENANTS * 2))
customer_polls=$((TENANTS * 4))
# wait_polls PARTNER CUSTOMER LIMIT: waits until that many polls of each
# kind have succeeded since the start.
wait_polls() {
    local deadline=$((SECONDS + $3))
    while [ "$(count_of "$partner_regex")" -lt "$1" ] || [ "$(count_of "$customer_regex")" -lt "$2" ]; do
        [ "$SECONDS" -le "$deadline" ] || die "only $(count_of "$partner_regex") of $1 partner-level and $(count_of "$customer_regex") of $2 per-customer polls succeeded in $3 s: $(grep -E 'level=(warn|error)' "$exporter_log" | tail -n 3)"
        kill -0 "$exporter_pid" 2>/dev/null || die "the exporter exited: $(tail -n 5 "$exporter_log")"
        if grep -q 'poll failed' "$exporter_log"; then
            die "a poll failed: $(grep 'poll failed' "$exporter_log" | head -n 1)"
        fi
        sleep 0.05
    done
}
# bounds REGEX FROM TO [REGEX FROM TO]: of the lines FROM..TO (1-based,
# inclusive) of each kind, the start (the earliest ts less its
# duration_seconds) and end (the latest ts) as Unix seconds, the wall
# time between, and the longest single poll.
bounds() {
    local first_ts first_d last_ts longest start end
    read -r first_ts first_d last_ts longest < <(
        while [ "$#" -ge 3 ]; do
            poll_lines "$1" | sed -n "$2,$3p"
            shift 3
        done | awk '{
            ts = ""; d = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^ts=/) ts = substr($i, 4)
                if ($i ~ /^duration_seconds=/) d = substr($i, 18) + 0
            }
            # 2026-01-02T03:04:05.678901Z: the seconds of the day, a day
            # more past midnight (a round lasts far less than 12 hours).
            split(substr(ts, 12), hms, ":")
            t = hms[1] * 3600 + hms[2] * 60 + hms[3]
            if (NR == 1) day_start = t
            if (t < day_start - 43200) t += 86400
            if (NR == 1 || t - d < first) { first = t - d; first_ts = ts; first_d = d }
            if (NR == 1 || t > last) { last = t; last_ts = ts }
            if (d > longest) longest = d
        } END { print first_ts, first_d, last_ts, longest }')
    start=$(awk -v t="$(date -d "$first_ts" +%s.%N)" -v d="$first_d" 'BEGIN { printf "%.3f", t - d }')
    end=$(date -d "$last_ts" +%s.%N)
    awk -v s="$start" -v e="$end" -v l="$longest" 'BEGIN { printf "%.3f %.3f %.2f %.2f\n", s, e, e - s, l }'
}
# full_bounds K: the K-th full round (every source).
full_bounds() {
    bounds "$customer_regex" $((($1 - 1) * customer_polls + 1)) $(($1 * customer_polls)) \
        "$partner_regex" $(((2 * $1 - 2) * partner_polls + 1)) $(((2 * $1 - 1) * partner_polls))
}
# partner_bounds J: the partner-level sources' J-th round between full rounds.
partner_bounds() { bounds "$partner_regex" $(((2 * $1 - 1) * partner_polls + 1)) $((2 * $1 * partner_polls)); }

# --- Timing --------------------------------------------------------------------
# at HALVES: the epoch time HALVES half-intervals after the start.
at() { awk -v s="$started_at" -v k="$1" -v h="$HALF" 'BEGIN { printf "%.3f", s + k * h }'; }
# sleep_until T [AHEAD]: sleeps until AHEAD seconds before the epoch time T.
sleep_until() {
    local left
    left=$(awk -v t="$1" -v a="${2:-0}" -v n="$(now)" 'BEGIN { d = t - a - n; printf "%.3f", (d > 0) ? d : 0 }')
    sleep "$left"
}
# before HALVES: dies unless there is still a second to go until then.
before() {
    awk -v n="$(now)" -v t="$(at "$1")" 'BEGIN { exit !(n < t - 1) }' ||
        die "the measurements ran into the next round: raise INTERVAL (now ${INTERVAL}s)"
}

# --- Scrapes -------------------------------------------------------------------
# One curl, COUNT transfers in a row on one keep-alive connection, gzip
# asked, bodies dropped: time_total of each, seconds, one a line.
scrapes() {
    curl -sf -H 'Accept-Encoding: gzip' -o /dev/null -w '%{time_total}\n' "$exporter_url?scrape=[1-$1]"
}
warm_scrapes() {
    local i
    for ((i = 0; i < WARM_SCRAPES; i++)); do
        curl -sf -H 'Accept-Encoding: gzip' -o /dev/null "$exporter_url"
    done
}
# in_window FILE START END: the times of FILE's scrapes (batches, each
# after a `batch T` line, T its start) that started between START and
# END, one a line; a scrape starts where the one before it in its batch
# ended.
in_window() {
    awk -v s="$2" -v e="$3" '$1 == "batch" { at = $2; next }
        { if (at >= s && at <= e) print $1; at += $1 }' "$1"
}
# percentile FILE P: the nearest-rank P-th percentile of FILE's seconds, in ms.
percentile() {
    sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        r = int((p / 100) * NR); if (r < (p / 100) * NR) r++; if (r < 1) r = 1
        printf "%.2f", v[r] * 1000 }'
}
latency() { echo "p50 $(percentile "$1" 50) ms, p99 $(percentile "$1" 99) ms, max $(percentile "$1" 100) ms ($(wc -l <"$1") scrapes)"; }

# thread_ticks FILE: the exporter's CPU ticks by thread name (the
# `poller` runtime, its one `poller-blocking` thread, where pages are
# decoded and snapshots rendered and published, and the web server's
# `tokio-rt-worker`s), as `name ticks` lines. The blocking thread ends
# after some idle seconds and a new one starts with the next poll, so
# only differences over one round mean something.
thread_ticks() {
    local task
    for task in /proc/"$exporter_pid"/task/*; do
        printf '%s %s\n' "$(tr ' ' '_' <"$task/comm" 2>/dev/null)" "$(cpu_ticks "${task#/proc/}" 2>/dev/null)"
    done | awk '{ t[$1] += $2 } END { for (name in t) print name, t[name] }' >"$1"
}
# thread_split NAME: the CPU by thread over the round NAME, busiest first.
thread_split() {
    awk -v hz="$ticks_per_second" 'FNR == NR { before[$1] = $2; next }
        { print $2 - before[$1], $1 }' "$work/threads_${1}_0" "$work/threads_${1}_1" | sort -rn |
        awk -v hz="$ticks_per_second" '{ printf "%s%s %.2f s", (NR > 1 ? ", " : ""), $2, $1 / hz }'
}

# --- One measured round -----------------------------------------------------------
# measure NAME PARTNER CUSTOMER: waits for the polls (totals since the
# start) of a round whose CPU readings were taken as NAME_ticks0 and
# NAME_upstream0, then sets NAME_cpu, NAME_upstream_cpu and reads the counts.
measure() {
    local name=$1 ticks upstream
    wait_polls "$2" "$3" $((HALF - 2))
    ticks=$(cpu_ticks "$exporter_pid")
    upstream=$(cpu_ticks "$upstream_pid")
    thread_ticks "$work/threads_${name}_1"
    local -n before_ticks="${name}_ticks0" before_upstream="${name}_upstream0"
    printf -v "${name}_cpu" '%s' "$(seconds_of_ticks $((ticks - before_ticks)))"
    printf -v "${name}_upstream_cpu" '%s' "$(seconds_of_ticks $((upstream - before_upstream)))"
    stats_all "$work/stats_$name"
}
# start_readings NAME: the CPU readings a round is measured from.
start_readings() {
    thread_ticks "$work/threads_${1}_0"
    printf -v "${1}_ticks0" '%s' "$(cpu_ticks "$exporter_pid")"
    printf -v "${1}_upstream0" '%s' "$(cpu_ticks "$upstream_pid")"
}

# === 0: full round 1, cold ==========================================================
log "full round 1 (cold: every subscription's SKU is looked up)"
round1_ticks0=0
round1_upstream0=$upstream_start_ticks
: >"$work/threads_round1_0"
measure round1 "$partner_polls" "$customer_polls"
read -r _ _ round1_wall round1_longest < <(full_bounds 1)
round1_requests=$(requests_between "$work/stats0" "$work/stats_round1")
log "  wall ${round1_wall}s (longest poll ${round1_longest}s), exporter CPU ${round1_cpu}s from its start, fake CPU ${round1_upstream_cpu}s, $round1_requests requests"

sleep 1
warm_scrapes
steady1_rss=$(kib "$exporter_pid" VmRSS)
curl -sf -H 'Accept-Encoding: gzip' -D "$work/headers" -o "$work/metrics.gz" "$exporter_url"
grep -qi '^content-encoding: gzip' "$work/headers" || die "the exporter did not gzip /metrics"
curl -sf -o "$work/metrics" "$exporter_url"
body_gz=$(stat -c %s "$work/metrics.gz")
body_plain=$(stat -c %s "$work/metrics")
all_series=$(grep -vc '^#' "$work/metrics" || true)
tenants_named=$(grep -o 'tenant="[^"]*"' "$work/metrics" | sort -u | wc -l)
[ "$tenants_named" -eq "$TENANTS" ] || die "the page names $tenants_named tenants, not $TENANTS"
up_ones=$(grep -c '^partner_center_up{.*} 1$' "$work/metrics" || true)
[ "$up_ones" -eq $((TENANTS * 6)) ] || die "partner_center_up is 1 for $up_ones sources, not $((TENANTS * 6))"
customer_up=$(grep -c '^partner_center_customer_up{' "$work/metrics" || true)
family_counts=$(grep -v '^#' "$work/metrics" | sed 's/[{ ].*//' | sort | uniq -c | sort -rn | head -n 4 |
    awk '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1 }')
log "  page: $all_series samples, $(mib $((body_plain / 1024))) MiB plain, $(mib $((body_gz / 1024))) MiB gzip"
idle_ticks0=$(cpu_ticks "$exporter_pid")
scrapes "$SCRAPES" >"$work/idle.times"
idle_ticks1=$(cpu_ticks "$exporter_pid")
idle_scrape_cpu_ms=$(awk -v t=$((idle_ticks1 - idle_ticks0)) -v hz="$ticks_per_second" -v n="$SCRAPES" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
log "  idle scrapes: $(latency "$work/idle.times"); exporter CPU ${idle_scrape_cpu_ms} ms a scrape"
before 1

# === I/2: the partner-level sources alone ============================================
log "the partner-level sources alone"
sleep_until "$(at 1)" 0.3
start_readings small1
measure small1 $((2 * partner_polls)) "$customer_polls"
read -r _ _ small1_wall small1_longest < <(partner_bounds 1)
small1_requests=$(requests_between "$work/stats_round1" "$work/stats_small1")
log "  wall ${small1_wall}s (longest poll ${small1_longest}s), exporter CPU ${small1_cpu}s, $small1_requests requests"
before 2

# === I: full round 2, warm ===========================================================
log "full round 2 (warm)"
sleep_until "$(at 2)" 0.3
start_readings round2
measure round2 $((3 * partner_polls)) $((2 * customer_polls))
read -r _ _ round2_wall round2_longest < <(full_bounds 2)
round2_requests=$(requests_between "$work/stats_small1" "$work/stats_round2")
log "  wall ${round2_wall}s (longest poll ${round2_longest}s), exporter CPU ${round2_cpu}s, fake CPU ${round2_upstream_cpu}s, $round2_requests requests"
sleep 1
warm_scrapes
steady2_rss=$(kib "$exporter_pid" VmRSS)
before 3

# === 3I/2: the partner-level sources alone, again ======================================
log "the partner-level sources alone, again"
sleep_until "$(at 3)" 0.3
start_readings small2
measure small2 $((4 * partner_polls)) $((2 * customer_polls))
read -r _ _ small2_wall small2_longest < <(partner_bounds 2)
log "  wall ${small2_wall}s (longest poll ${small2_longest}s), exporter CPU ${small2_cpu}s"
before 4

# === 2I: full round 3, warm, scraped back to back ========================================
log "full round 3 (warm), scraped back to back"
# The scrapes start a second ahead; only those that start within the
# round are counted.
sleep_until "$(at 4)" 1
: >"$work/busy.batches"
(
    while [ ! -e "$work/busy.stop" ]; do
        echo "batch $(now)"
        scrapes "$BUSY_BATCH" || true
    done >>"$work/busy.batches"
) &
busy_pid=$!
pids+=("$busy_pid")
sleep_until "$(at 4)" 0.3
start_readings round3
measure round3 $((5 * partner_polls)) $((3 * customer_polls))
touch "$work/busy.stop"
# The batch under way ends first.
wait "$busy_pid" || true
stop "$busy_pid"
read -r round3_start round3_end round3_wall round3_longest < <(full_bounds 3)
in_window "$work/busy.batches" "$round3_start" "$round3_end" >"$work/busy.times"
round3_requests=$(requests_between "$work/stats_small2" "$work/stats_round3")
log "  wall ${round3_wall}s (longest poll ${round3_longest}s), exporter CPU ${round3_cpu}s with the scrapes, $round3_requests requests"
log "  scrapes during the round: $(latency "$work/busy.times")"

peak_rss=$(kib "$exporter_pid" VmHWM)
threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$exporter_pid/status")
stop "$exporter_pid"
stop "$upstream_pid"
if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP"
    cp "$work/exporter/config.yml" "$exporter_log" "$work"/stats_* "$work/idle.times" \
        "$work/busy.batches" "$work/busy.times" "$KEEP/"
fi

promtool_verdict="promtool not installed"
if command -v promtool >/dev/null 2>&1; then
    log "promtool check metrics (the exporter is stopped)"
    if promtool check metrics <"$work/metrics" >"$work/promtool" 2>&1; then
        promtool_verdict="promtool check metrics: no problems"
    else
        promtool_verdict="promtool check metrics: $(grep -c . "$work/promtool") lines of problems, first: $(head -n 1 "$work/promtool")"
    fi
fi

# === What a budget makes of one tenant's round ====================================
t1=$(tenant_name 0)
cold_one=$(requests_between "$work/stats0" "$work/stats_round1" "$t1")
warm_one=$(requests_between "$work/stats_small1" "$work/stats_round2" "$t1")
lookups_one=$(stat_sum "$work/stats_round1" lookup_requests "$t1")
minutes() { awk -v r="$1" -v b="$BUDGET" 'BEGIN { printf "%.1f", r / b }'; }

# === The table ======================================================================
rows=()
per_second() { awk -v r="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.0f", r / w; else print "n/a" }'; }
row "full round 1 (cold, with lookups), $TENANTS x $CUSTOMERS x $SKUS, no budget" \
    "wall $round1_wall s (longest poll $round1_longest s); $round1_requests requests, $(per_second "$round1_requests" "$round1_wall")/s" \
    "$round1_cpu s (from its start)" "fake $round1_upstream_cpu s" "-"
row "full round 2 (warm)" \
    "wall $round2_wall s (longest poll $round2_longest s); $round2_requests requests, $(per_second "$round2_requests" "$round2_wall")/s" \
    "$round2_cpu s" "fake $round2_upstream_cpu s" "-"
row "full round 3 (warm), scraped back to back" \
    "wall $round3_wall s (longest poll $round3_longest s); $round3_requests requests" \
    "$round3_cpu s (polls and scrapes)" "fake $round3_upstream_cpu s" "-"
row "partner-level sources alone ($small1_requests requests, 7 series a tenant), twice" \
    "wall $small1_wall s, $small2_wall s (longest poll $small1_longest s, $small2_longest s)" \
    "$small1_cpu s, $small2_cpu s" "fake $small1_upstream_cpu s, $small2_upstream_cpu s" "-"
row "peak RSS (VmHWM), everything" "$(mib "$peak_rss") MiB" "-" "-" "$threads threads"
row "exporter CPU by thread, round 2" "$(thread_split round2)" "-" "-" "-"
row "exporter CPU by thread, partner-level sources alone (first)" "$(thread_split small1)" "-" "-" "-"
row "steady RSS, idle after round 1 / round 2" "$(mib "$steady1_rss") / $(mib "$steady2_rss") MiB" "-" "-" "-"
row "/metrics" "$all_series samples ($((all_series / TENANTS)) a tenant; $customer_up partner_center_customer_up), $body_plain B plain, $body_gz B gzip" \
    "-" "largest: $family_counts" "$promtool_verdict"
row "scrape latency, idle, $SCRAPES in a row" "$(latency "$work/idle.times")" \
    "$idle_scrape_cpu_ms ms a scrape" "-" "-"
row "scrape latency during round 3" "$(latency "$work/busy.times")" \
    "-" "-" "p99 $(ratio "$(percentile "$work/busy.times" 99)" "$(percentile "$work/idle.times" 99)") x idle"
row "one tenant ($t1) at $BUDGET requests a minute" \
    "cold round $cold_one requests ($lookups_one lookups): $(minutes "$cold_one") min; warm round $warm_one requests: $(minutes "$warm_one") min" \
    "-" "-" "computed"

echo
echo "| what | measured | exporter CPU | other | note |"
echo "|---|---|---|---|---|"
for line in "${rows[@]}"; do
    IFS='|' read -r what measured a b c <<<"$line"
    echo "| $what | $measured | $a | $b | $c |"
done
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r); load average before the run: $load_before"
echo "setup: $TENANTS tenants x $CUSTOMERS customers x $SKUS SKUs (one subscription each), per-customer sources every ${INTERVAL}s, partner-level every ${HALF}s, max_requests_per_minute 0, max_concurrent_requests $CONCURRENCY, customers.page_size $PAGE_SIZE"
echo "scrapes: curl $(curl --version | head -n 1 | awk '{ print $2 }'), one keep-alive connection, Accept-Encoding: gzip"
echo "exporter: $exporter_bin, GLIBC_TUNABLES=${EXPORTER_GLIBC_TUNABLES:-(none)}"
