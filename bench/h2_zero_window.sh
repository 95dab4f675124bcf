#!/usr/bin/env bash
# RSS of wxlogin before, during and after the HTTP/2 zero-window attack (issue 27,
# finding 1): CONNECTIONS connections of STREAMS stalled streams each, held until the
# server closes them at the idle deadline (WXLOGIN_IDLE_TIMEOUT_SECS, 5 s here).
#
#   bench/h2_zero_window.sh [CONNECTIONS] [STREAMS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-200}
streams=${2:-64}
rounds=${3:-3}
cargo build --release --quiet --bin wxlogin --example h2_zero_window
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env ${BENCH_ENV:-} WXLOGIN_LISTEN=127.0.0.1:$port WXLOGIN_IDLE_TIMEOUT_SECS=5 WXLOGIN_LOG_LEVEL=warn \
    target/release/wxlogin --dev >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.1; done
rss() { awk '/VmRSS/ { print $2 }' "/proc/$server/status"; }
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/openapi.json" >/dev/null; done
echo "before: $(rss) KiB"
for round in $(seq 1 "$rounds"); do
    target/release/examples/h2_zero_window "127.0.0.1:$port" "$connections" "$streams" &
    attack=$!
    peak=0
    while kill -0 $attack 2>/dev/null; do
        now=$(rss)
        [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.2
    done
    wait $attack
    healthz=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
    sleep 1
    after=$(rss)
    # Ordinary traffic afterwards: the allocator frees what it holds as its threads work.
    wrk -t1 -c8 -d2s "http://127.0.0.1:$port/healthz" >/dev/null
    sleep 1
    echo "round $round: peak $peak KiB, after $after KiB, after 2 s of traffic $(rss) KiB, /healthz $healthz"
done
