#!/usr/bin/env bash
# The fault run: wxlogin on a real Redis (append-only file, fsync on every write), under
# wrk load for a bounded time, while Redis is frozen and thawed, killed and restarted from
# its append-only file, and WeChat answers -1, slowly, or with HTML for a stretch each.
# Reports the answers by status (500s must be 0), the sessions issued before the faults
# that no longer resolve after them (must be 0), the longest answer, and RSS before and
# after. Needs redis-server, wrk and python3.
#
#   bench/faults.sh              # STRETCH=5 (s per fault), CONNS=32
set -euo pipefail
cd "$(dirname "$0")/.."
STRETCH=${STRETCH:-5}
CONNS=${CONNS:-32}
for tool in redis-server redis-cli wrk python3 curl; do
    command -v "$tool" >/dev/null || { echo "faults: $tool is missing"; exit 1; }
done
cargo build --release --quiet
bin=$PWD/target/release/wxlogin
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port) stub_port=$(free_port) port=$(free_port)

start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync always --dir "$work" >"$work/redis.log" 2>&1 &
    redis=$!
    pids+=("$redis")
    for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.05; done
    echo "redis-server did not start"; exit 1
}
stub_mode() { curl -sf -X POST -d "$1" "http://127.0.0.1:$stub_port/_mode" >/dev/null; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$target/status"; }

start_redis
python3 bench/fault_stub.py "$stub_port" &
pids+=($!)
for _ in $(seq 1 100); do stub_mode normal 2>/dev/null && curl -sf -o /dev/null "http://127.0.0.1:$stub_port/" && break; sleep 0.05; done
WXLOGIN_LISTEN="127.0.0.1:$port" WXLOGIN_WECHAT_BASE_URL="http://127.0.0.1:$stub_port" \
WXLOGIN_APPID=wx_fault_appid WXLOGIN_SECRET=fault WXLOGIN_RATE_LIMIT_PER_MIN=0 \
WXLOGIN_SESSION_STORE=redis WXLOGIN_REDIS_URL="redis://127.0.0.1:$redis_port" \
WXLOGIN_WECHAT_TIMEOUT_MS=3000 RUST_LOG=warn \
    "$bin" 2>"$work/wxlogin.log" &
target=$!
pids+=("$target")
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done

# Sessions issued before the faults: every one must still resolve after them.
for i in $(seq 1 500); do
    answer=$(curl -s -X POST "http://127.0.0.1:$port/openid" -H 'Content-Type: application/json' \
        -d "{\"code\":\"before-$i\"}")
    token=$(echo "$answer" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    [ -n "$token" ] || { echo "a login before the faults failed: $answer" >&2; cat "$work/wxlogin.log" >&2; exit 1; }
    echo "$token"
done >"$work/tokens"
rss_before=$(rss_kib)

duration=$((STRETCH * 8))
TOKENS="$work/tokens" wrk -t2 -c"$CONNS" -d"${duration}s" --timeout 10s -s bench/faults.lua \
    "http://127.0.0.1:$port" >"$work/wrk.out" &
load=$!
phase() { echo "$(date -u +%T) $1"; }
sleep "$STRETCH"
phase "Redis frozen (SIGSTOP)";    kill -STOP "$redis"; sleep "$STRETCH"
phase "Redis thawed (SIGCONT)";    kill -CONT "$redis"; sleep "$STRETCH"
phase "Redis killed (SIGKILL)";    kill -KILL "$redis"; wait "$redis" 2>/dev/null || true; sleep "$STRETCH"
phase "Redis restarted from its append-only file"; start_redis; sleep "$STRETCH"
phase "WeChat answers -1";         stub_mode busy; sleep "$STRETCH"
phase "WeChat answers in 2 s";     stub_mode slow; sleep "$STRETCH"
phase "WeChat answers HTML";       stub_mode html; sleep "$STRETCH"
phase "WeChat back to normal";     stub_mode normal
wait "$load"
rss_after=$(rss_kib)

lost=0
while read -r token; do
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/session" -H "Authorization: Bearer $token")
    [ "$status" = 200 ] || lost=$((lost + 1))
done <"$work/tokens"

echo
echo "# $(date -u +%FT%TZ), $(nproc) CPUs, ${duration}s of load at $CONNS connections, faults of ${STRETCH}s each"
sed -n 's/^STATUS /answers by status: /p' "$work/wrk.out"
fivehundreds=$(grep '^STATUS' "$work/wrk.out" | tr ' ' '\n' | awk -F= '$1 == 500 {print $2}')
echo "500s: ${fivehundreds:-0}"
sed -n 's/^MAX_LATENCY_MS /longest answer: /p' "$work/wrk.out" | sed 's/$/ ms/'
sed -n 's/^ERRORS /socket errors: /p' "$work/wrk.out"
echo "sessions issued before the faults that no longer resolve: $lost of $(wc -l <"$work/tokens")"
echo "RSS: ${rss_before} KiB before, ${rss_after} KiB after"
[ "${fivehundreds:-0}" = 0 ] && [ "$lost" = 0 ]
