#!/usr/bin/env bash
# How many connections wxlogin opens to WeChat under WeChat-like latency: the shared rig's
# Go stub at 30-100 ms, wrk with 512 connections for 10 s, `ss` sampled every 0.1 s.
# Prints the distinct upstream connections and the most at once. Needs the shared rig
# built (../shared/bench/run.sh once), wrk and ss.
#
#   bench/upstream_connections.sh
set -u
cd "$(dirname "$0")/.."
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
B=../shared/bench
STUB_ADDR=127.0.0.1:19921 STUB_DELAY_MS=30-100 taskset -c 1 $B/.bin/stub >/dev/null 2>&1 &
stub=$!
WXLOGIN_LISTEN=127.0.0.1:19922 WXLOGIN_WECHAT_BASE_URL=http://127.0.0.1:19921 WXLOGIN_APPID=wx_bench_appid WXLOGIN_SECRET=bench_secret WXLOGIN_RATE_LIMIT_PER_MIN=1000000000 taskset -c 0 target/release/wxlogin >/dev/null 2>&1 &
wx=$!
sleep 1
(CODE_PREFIX=u taskset -c 1 wrk -t2 -c512 -d10s -s $B/wrk/login.lua http://127.0.0.1:19922/openid > $t/wrk.txt) &
load=$!
: > $t/ports; : > $t/counts
while kill -0 $load 2>/dev/null; do
  ss -tnH state established "( dport = :19921 )" | awk '{print $3}' > $t/now
  cat $t/now >> $t/ports; wc -l < $t/now >> $t/counts
  sleep 0.1
done
echo "distinct upstream connections: $(sort -u $t/ports | wc -l), most at once: $(sort -n $t/counts | tail -1)"
grep -E "requests in|Socket errors|Requests/sec" $t/wrk.txt
kill $wx $stub 2>/dev/null
