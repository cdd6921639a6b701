#!/usr/bin/env bash
# Collector memory over time with many connected agents (issue #10: "memory
# flat over an hour"): one collector, one steward-loadgen run of N agents ×
# M series, one batch per interval each, and the collector's RSS sampled
# every --sample while it runs. Prints the curve and the run's figures.
#
# Usage: bench/agents-soak.sh [--smoke] [--agents 10000] [--series 50]
#                             [--duration 20m] [--interval 10s] [--sample 30s]
# Needs ulimit -n above the agent count (raised here as far as the hard
# limit allows). The loadgen caps a run at one hour.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

agents=10000 series=50 duration=20m interval=10s sample=30s
if ((SMOKE)); then agents=20 duration=4s interval=1s sample=1s; fi
while (($#)); do
  case $1 in
    --agents) agents=$2; shift ;;
    --series) series=$2; shift ;;
    --duration) duration=$2; shift ;;
    --interval) interval=$2; shift ;;
    --sample) sample=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-loadgen steward-collector

need=$((agents + 500))
if (($(ulimit -n) < need)); then
  echo "bench/agents-soak.sh: ulimit -n $(ulimit -n) < $need for $agents agents" >&2
  exit 1
fi

echo "## Collector memory over time"
echo
machine_line
echo
echo "Command: \`bench/agents-soak.sh $BENCH_CMDLINE\` ($agents agents × $series series, one batch per $interval, sending phase $duration, RSS every $sample)"
echo
start_collector soak
rss0=$(rss_kib "$COLLECTOR_PID")
t0=$(now_s) c0=$(cpu_ticks "$COLLECTOR_PID")
REPORT=$BENCH_DIR/soak-report
"$BIN/steward-loadgen" --addr "$GRPC" --dir "$COLLECTOR_DIR" --agents "$agents" --series "$series" \
  --mode paced --interval "$interval" --window 1 --duration "$duration" --inventory --kv \
  >"$REPORT" 2>"$BENCH_DIR/soak-loadgen.err" &
loadgen_pid=$!
BENCH_PIDS+=("$loadgen_pid")

echo "| elapsed s | collector RSS MiB | load average (1 min) |"
echo "|---|---|---|"
echo "| 0 | $(mib "$rss0") | $(cut -d' ' -f1 /proc/loadavg) |"
while kill -0 "$loadgen_pid" 2>/dev/null; do
  sleep "$sample" &
  wait $! || true
  kill -0 "$loadgen_pid" 2>/dev/null || break
  elapsed=$(awk -v a="$t0" -v b="$(now_s)" 'BEGIN {printf "%.0f", b - a}')
  echo "| $elapsed | $(mib "$(rss_kib "$COLLECTOR_PID")") | $(cut -d' ' -f1 /proc/loadavg) |"
done
if ! wait "$loadgen_pid"; then
  echo "steward-loadgen failed:" >&2
  cat "$BENCH_DIR/soak-loadgen.err" >&2
  exit 1
fi
t1=$(now_s) c1=$(cpu_ticks "$COLLECTOR_PID")
cpu=$(percent $((c1 - c0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
echo
echo "| agents connected | acked samples/s | ack p50 ms | ack p99 ms | ticks behind | errors | collector CPU % | RSS MiB idle → end | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "| $(kv agents_connected) | $(fmt0 "$(kv samples_per_s)") | $(fmt1 "$(kv ack_p50_ms)") | $(fmt1 "$(kv ack_p99_ms)") | $(kv ticks_behind) | $(kv errors) | $cpu | $(mib "$rss0") → $(mib "$(rss_kib "$COLLECTOR_PID")") | $(mib "$(hwm_kib "$COLLECTOR_PID")") |"
bench_stop "$COLLECTOR_PID"
