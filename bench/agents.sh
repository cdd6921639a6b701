#!/usr/bin/env bash
# Many idle-ish agents: each a real TLS stream sending one batch of 50
# series every 10 s. A fresh collector per count; its RSS after the run, its
# CPU% over the run, the time to connect everyone, hello→welcome and ack
# latency.
#
# Usage: bench/agents.sh [--smoke] [--counts "1000 5000"] [--with-10k]
#                        [--duration 60s] [--interval 10s] [--series 50]
# The collector's default [limits] max_agents is 10,000; --with-10k adds a
# 10,000-agent step. Needs ulimit -n above the agent count (raised here as
# far as the hard limit allows).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

counts="1000 5000" duration=60s interval=10s series=50
if ((SMOKE)); then counts="20" duration=3s interval=1s; fi
while (($#)); do
  case $1 in
    --counts) counts=$2; shift ;;
    --with-10k) counts="$counts 10000" ;;
    --duration) duration=$2; shift ;;
    --interval) interval=$2; shift ;;
    --series) series=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-loadgen steward-collector

echo "## Agents"
echo
machine_line
echo
echo "Command: \`bench/agents.sh $BENCH_CMDLINE\` (ulimit -n $(ulimit -n); each agent: $series series, one batch per $interval, sending phase $duration)"
echo
echo "| agents | connected | connect all s | welcome p99 ms | acked samples/s | ack p50 ms | ack p99 ms | ticks behind | errors | collector CPU % (connect + run) | RSS MiB idle → after | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for count in $counts; do
  need=$((count + 500))
  if (($(ulimit -n) < need)); then
    echo "| $count | skipped: ulimit -n $(ulimit -n) < $need | | | | | | | | | | |"
    continue
  fi
  start_collector "c-$count"
  rss0=$(rss_kib "$COLLECTOR_PID")
  t0=$(now_s) c0=$(cpu_ticks "$COLLECTOR_PID")
  if ! loadgen --addr "$GRPC" --dir "$COLLECTOR_DIR" --agents "$count" --series "$series" \
    --mode paced --interval "$interval" --window 1 --duration "$duration" --inventory; then
    echo "steward-loadgen failed at $count agents" >&2
    exit 1
  fi
  t1=$(now_s) c1=$(cpu_ticks "$COLLECTOR_PID")
  rss1=$(rss_kib "$COLLECTOR_PID") hwm=$(hwm_kib "$COLLECTOR_PID")
  cpu=$(percent $((c1 - c0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
  echo "| $(fmt0 "$count") | $(kv agents_connected) | $(fmt1 "$(kv connect_s)") | $(fmt1 "$(kv connect_p99_ms)") | $(fmt0 "$(kv samples_per_s)") | $(fmt1 "$(kv ack_p50_ms)") | $(fmt1 "$(kv ack_p99_ms)") | $(kv ticks_behind) | $(kv errors) | $cpu | $(mib "$rss0") → $(mib "$rss1") | $(mib "$hwm") |"
  bench_stop "$COLLECTOR_PID"
  rm -rf "$COLLECTOR_DIR"
done
