# Shell functions the side-by-side benchmarks share (benches/compare.sh,
# benches/customers.sh, benches/tenants.sh): scratch space cleaned up on
# exit, stopping what they started, free ports, waiting, /proc readings
# (memory and CPU time), wrk's figures, nginx serving the same bytes, and
# the results table. Sourced, not run; the sourcing script sets `work`
# (its scratch directory) first, and defines `log`.

# Every process started is remembered here and stopped on exit.
declare -a pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Stops one process started here and forgets it.
stop() {
    local pid=$1 kept=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${pids[@]}"; do
        [ "$p" = "$pid" ] || kept+=("$p")
    done
    pids=("${kept[@]}")
}

# A port on 127.0.0.1 that nothing listens on (a connection is refused).
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Waits up to $2 seconds for command $1 (a function name) to succeed.
wait_for() {
    local check=$1 deadline=$((SECONDS + $2))
    while [ "$SECONDS" -le "$deadline" ]; do
        if "$check"; then return 0; fi
        sleep 0.05
    done
    return 1
}

kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

ticks_per_second=$(getconf CLK_TCK)
# utime + stime of every thread of process $1, in clock ticks. The fields
# are counted after the command name's closing parenthesis, which may
# itself hold spaces.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
seconds_of_ticks() { awk -v t="$1" -v hz="$ticks_per_second" 'BEGIN { printf "%.2f", t / hz }'; }

# A latency percentile of wrk's --latency table, in milliseconds.
wrk_ms() {
    awk -v p="$2%" '$1 == p {
        v = $2; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
        f = (unit == "us") ? 0.001 : (unit == "ms") ? 1 : (unit == "s") ? 1000 : (unit == "m") ? 60000 : 0
        printf "%.3f", v * f }' "$1"
}

# The first executable named $1 in cargo's messages in $build_json. The
# scripts build the exporter first, as users build it; the fake upstream's
# build, a bench target, builds another copy of the exporter in its own
# target directory, with the dev-dependencies' features, which is not the
# one to measure.
executable_of() {
    grep -F "\"name\":\"$1\"" "$build_json" | grep -o '"executable":"[^"]*"' | head -n 1 | cut -d'"' -f4
}

wrk_rps() { awk '$1 == "Requests/sec:" { print $2 }' "$1"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 <= b + 0) }'; }

row() { rows+=("$1|$2|$3|$4|$5"); }

# Starts nginx on $nginx_port serving $work/www, the exporter's /metrics
# bytes (the .gz copy when gzip is asked), its own files in $work/nginx,
# and waits until it serves $work/www/$1/metrics.
start_nginx() {
    local probe=$1 user_line=""
    # Run as root, nginx hands the work to "nobody"; the files must be readable.
    if [ "$(id -u)" -eq 0 ]; then
        user_line="user nobody nogroup;"
        chmod -R a+rX "$work"
    fi
    cat >"$work/nginx/nginx.conf" <<EOF
# Serves the exporter's /metrics bytes as static files (gzip_static: the
# .gz copy when gzip is asked), for the side-by-side benchmarks.
$user_line
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/client_body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    types { }
    default_type "text/plain; version=0.0.4; charset=utf-8";
    gzip_static on;
    gzip_vary on;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
    }
}
EOF
    nginx -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
    pids+=($!)
    nginx_up() { curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/$probe/metrics"; }
    wait_for nginx_up 20 || die "nginx did not start: $(cat "$work/nginx/error.log")"
}
