#!/usr/bin/env bash
# wxlogin's own benchmark: the release build against `wxlogin emulator`, driven by wrk.
# Needs wrk and taskset (Debian/Ubuntu: apt-get install -y wrk util-linux).
#
#   bench/run.sh                      # 10 s phases, 64 connections, default (info) logs
#   DURATION=6 RUST_LOG=warn bench/run.sh
#
# wxlogin runs on CPU 0; the emulator and wrk share CPU 1 (set TARGET_CPU / LOAD_CPU).
# For the side-by-side comparison with hand-written Go and Node services, see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
TARGET_CPU=${TARGET_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
export RUST_LOG=${RUST_LOG:-info}

for tool in wrk taskset; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y wrk util-linux)"; exit 1; }
done
cargo build --release --quiet
bin=target/release/wxlogin
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
emulator_port=$(free_port)
port=$(free_port)

taskset -c "$LOAD_CPU" "$bin" emulator --listen "127.0.0.1:$emulator_port" --app default=wx0000000000000dev:bench >/dev/null 2>&1 &
pids+=($!)
WXLOGIN_LISTEN="127.0.0.1:$port" \
WXLOGIN_WECHAT_BASE_URL="http://127.0.0.1:$emulator_port" \
WXLOGIN_APPID=wx0000000000000dev WXLOGIN_SECRET=bench \
WXLOGIN_RATE_LIMIT_PER_MIN=0 \
    taskset -c "$TARGET_CPU" "$bin" 2>"$work/wxlogin.log" >/dev/null &
target=$!
pids+=("$target")
for _ in $(seq 1 100); do
    WXLOGIN_LISTEN="127.0.0.1:$port" "$bin" healthcheck 2>/dev/null && break
    sleep 0.1
done

# utime + stime of the target, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$target/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$target/status"; }
ticks_per_sec=$(getconf CLK_TCK)

# One wrk phase: prints "<requests/s> <p99 ms> <CPU µs per request>".
phase() {
    local script=$1 duration=$2
    local before after out
    before=$(cpu_ticks)
    out=$(taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${duration}s" --latency -s "bench/$script" "http://127.0.0.1:$port")
    after=$(cpu_ticks)
    echo "$out" >>"$work/wrk.log"
    local rate requests p99
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}')
    local cpu_us
    cpu_us=$(awk -v t=$((after - before)) -v hz="$ticks_per_sec" -v n="$requests" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    echo "$rate $p99 $cpu_us"
}

idle=$(rss_kib)
TOKENS_OUT="$work/tokens" CODE_PREFIX=warm phase login.lua "$WARMUP" >/dev/null
cat "$work"/tokens.* >"$work/tokens"
read -r login_rate login_p99 login_cpu < <(CODE_PREFIX=run phase login.lua "$DURATION")
rss=$(rss_kib)
read -r session_rate session_p99 session_cpu < <(TOKENS="$work/tokens" phase session.lua "$DURATION")
errors=$(grep -c "Non-2xx\|Socket errors" "$work/wrk.log" || true)

printf '%s, %s CPUs, %ss phases, %s connections, RUST_LOG=%s\n' "$(date -u +%FT%TZ)" "$(nproc)" "$DURATION" "$CONNS" "$RUST_LOG"
printf '%-10s %10s %8s %12s\n' phase "req/s" "p99 ms" "CPU µs/req"
printf '%-10s %10s %8s %12s\n' login "$login_rate" "$login_p99" "$login_cpu"
printf '%-10s %10s %8s %12s\n' session "$session_rate" "$session_p99" "$session_cpu"
printf 'RSS: %s KiB idle, %s KiB after the login phase\n' "$idle" "$rss"
if [ "$errors" -gt 0 ]; then
    echo "wrk reported non-2xx responses or socket errors:"
    grep "Non-2xx\|Socket errors" "$work/wrk.log"
fi
