#!/usr/bin/env bash
# Lookups over HTTP at 1 k and at about a million sessions: two instances side by side
# on CPU 0, the large one filled through the shared rig's Go stub for FILL seconds (110:
# about 1.1 M logins here), then GET /session on each in turn, three times. Prints RSS,
# the session counts, and each lookup run's rate, p50 and p99.
#
#   cargo build --release && bench/lookups_at_1m.sh
set -u
cd "$(dirname "$0")/.."
B=../shared/bench
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
STUB_ADDR=127.0.0.1:19911 taskset -c 1 $B/.bin/stub >/dev/null 2>&1 &
stub=$!
start() { WXLOGIN_LISTEN=127.0.0.1:$1 WXLOGIN_WECHAT_BASE_URL=http://127.0.0.1:19911 WXLOGIN_APPID=wx_bench_appid WXLOGIN_SECRET=bench_secret WXLOGIN_RATE_LIMIT_PER_MIN=1000000000 WXLOGIN_SESSION_MAX=2000000 RUST_LOG=warn taskset -c 0 target/release/wxlogin >/dev/null 2>&1 & echo $!; }
small=$(start 19912); big=$(start 19913)
sleep 1
rss() { echo $(( $(awk '{print $2}' /proc/$1/statm) * 4 / 1024 )); }
echo "idle RSS small $(rss $small) MiB big $(rss $big) MiB"
TOKENS_OUT=$w/small CODE_PREFIX=s taskset -c 1 wrk -t1 -c8 -d1s -s $B/wrk/login.lua http://127.0.0.1:19912/openid >/dev/null
head -1000 $w/small > $w/small1k
TOKENS_OUT=$w/big CODE_PREFIX=b taskset -c 1 wrk -t2 -c64 -d${FILL:-110}s -s $B/wrk/login.lua http://127.0.0.1:19913/openid | grep -E "Requests/sec|requests in"
echo "big: $(wc -l < $w/big) tokens, RSS $(rss $big) MiB; small: $(wc -l < $w/small) tokens, RSS $(rss $small) MiB"
curl -s http://127.0.0.1:19913/metrics | grep "^wxlogin_sessions_live"
shuf -n 100000 $w/big > $w/big100k
for i in 1 2 3; do
  for t in small1k:19912 big100k:19913; do
    f=${t%%:*}; p=${t##*:}
    r=$(TOKENS=$w/$f taskset -c 1 wrk -t1 -c64 -d4s --latency -s $B/wrk/session.lua http://127.0.0.1:$p/session)
    echo "$f: $(echo "$r" | awk '/Requests\/sec/ {print $2"/s"}') p50 $(echo "$r" | awk '$1=="50%" {print $2}') p99 $(echo "$r" | awk '$1=="99%" {print $2}')"
  done
done
kill $small $big $stub
