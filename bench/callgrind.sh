#!/usr/bin/env bash
# Instructions per login and per lookup: a release binary under callgrind against the
# shared rig's Go stub, instrumentation on only while wrk runs, after a warm-up. Leaves the
# two profiles (login, lookup) for callgrind_annotate and prints their paths.
#
#   bench/callgrind.sh [VAR=value …]      e.g. bench/callgrind.sh WXLOGIN_LOG_FORMAT=json
#   TARGET=axum-min bench/callgrind.sh    the same load on ../shared/bench's axum-minimal,
#                                         for a side-by-side profile (LOG=info unless set)
#   BIN=/path/to/wxlogin bench/callgrind.sh   another wxlogin build (default target/release)
set -u
cd "$(dirname "$0")/.."
B=../shared/bench
work=$(mktemp -d)
STUB_ADDR=127.0.0.1:19901 $B/.bin/stub >/dev/null 2>&1 &
stub=$!
if [ "${TARGET:-wxlogin}" = axum-min ]; then
  env LOG=info "$@" PORT=19902 UPSTREAM=http://127.0.0.1:19901 \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.%p \
    $B/.bin/axum-minimal >$work/wx.log 2>&1 &
else
  env "$@" WXLOGIN_LISTEN=127.0.0.1:19902 WXLOGIN_WECHAT_BASE_URL=http://127.0.0.1:19901 \
    WXLOGIN_APPID=wx_bench_appid WXLOGIN_SECRET=bench_secret WXLOGIN_RATE_LIMIT_PER_MIN=100000000 \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.%p \
    "${BIN:-target/release/wxlogin}" 2>$work/wx.log &
fi
wx=$!
URL=http://127.0.0.1:19902
for _ in $(seq 1 300); do curl -s -o /dev/null $URL/session && break; sleep 0.2; done
TOKENS_OUT=$work/tokens CODE_PREFIX=warm wrk -t1 -c8 -d3s -s $B/wrk/login.lua $URL/openid >/dev/null
callgrind_control -z $wx >/dev/null; callgrind_control -i on $wx >/dev/null
n=$(CODE_PREFIX=meas wrk -t1 -c8 -d8s -s $B/wrk/login.lua $URL/openid | awk '/requests in/ {print $1}')
callgrind_control -i off $wx >/dev/null; callgrind_control -d login $wx >/dev/null
sleep 1
callgrind_control -z $wx >/dev/null; callgrind_control -i on $wx >/dev/null
m=$(TOKENS=$work/tokens wrk -t1 -c8 -d8s -s $B/wrk/session.lua $URL/session | awk '/requests in/ {print $1}')
callgrind_control -i off $wx >/dev/null; callgrind_control -d lookup $wx >/dev/null
sleep 1
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; }
lf=$(ls $work/cg.*.1 2>/dev/null | head -1); sf=$(ls $work/cg.*.2 2>/dev/null | head -1)
li=$(total "$lf"); si=$(total "$sf")
echo "logins=$n instr/login=$((li / n)) lookups=$m instr/lookup=$((si / m))"
echo "files: $lf $sf"
kill $wx $stub 2>/dev/null; wait 2>/dev/null
