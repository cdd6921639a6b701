#!/usr/bin/env bash
# Bytes per sample on disk after loading a fixed data set: AGENTS agents ×
# SERIES series × POINTS points 10 s apart, ending now, with host-like
# values (percent gauges with one decimal, counters, 0/1 states, noisy
# gauges). Measured for whatever store the collector has (every file the
# collector added to its directory, after a clean shutdown), and for
# VictoriaMetrics (its data directory after a flush and a forced merge)
# where Debian's victoria-metrics is installed.
#
# Usage: bench/storage.sh [--smoke] [--agents 10] [--series 1000] [--points 500]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

agents=10 series=1000 points=500
if ((SMOKE)); then agents=2 series=100 points=20; fi
while (($#)); do
  case $1 in
    --agents) agents=$2; shift ;;
    --series) series=$2; shift ;;
    --points) points=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-loadgen steward-collector
total=$((agents * series * points))

echo "## Storage"
echo
machine_line
echo
echo "Command: \`bench/storage.sh $BENCH_CMDLINE\`: $agents agents × $series series × $points points = $(fmt0 $total) samples"
echo
echo "| store | samples acknowledged | load s | bytes on disk | bytes per sample | files |"
echo "|---|---|---|---|---|---|"

start_collector steward
base=$(dir_bytes "$COLLECTOR_DIR")
t0=$(now_s)
loadgen --addr "$GRPC" --dir "$COLLECTOR_DIR" --agents "$agents" --series "$series" \
  --points "$points" --interval 10s --mode max --window 8 --duration 3600s
t1=$(now_s)
acked=$(kv samples_acked 0)
bench_stop "$COLLECTOR_PID"
rm -f "$COLLECTOR_DIR"/collector.log
after=$(dir_bytes "$COLLECTOR_DIR")
files=$(cd "$COLLECTOR_DIR" && find . -type f -newer collector.toml -printf '%f %s\n' | sort | awk '{printf "%s%s %.1f MB", (NR > 1 ? ", " : ""), $1, $2 / 1e6}')
echo "| steward ($(grep -E '^(sqlite|path|engine) *=' "$COLLECTOR_DIR/collector.toml" | tr '\n' ' ' | sed 's/ *$//;s/"//g')) | $(fmt0 "$acked") | $(fmt1 "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')") | $(fmt0 $((after - base))) | $(awk -v b=$((after - base)) -v n="$acked" 'BEGIN {printf "%.2f", n ? b / n : 0}') | $files |"
if [[ $acked != "$total" ]]; then
  echo
  echo "Only $acked of $total samples were acknowledged:" >&2
  cat "$REPORT" >&2
  exit 1
fi
rm -rf "$COLLECTOR_DIR"

if start_victoria vm; then
  base=$(dir_bytes "$VM_DIR/data")
  t0=$(now_s)
  loadgen --target victoria --addr "$VM_ADDR" --agents "$agents" --series "$series" \
    --points "$points" --interval 10s --mode max --duration 3600s
  t1=$(now_s)
  acked=$(kv samples_acked 0)
  curl -fsS "http://$VM_ADDR/internal/force_flush" >/dev/null
  sleep 2
  curl -fsS "http://$VM_ADDR/internal/force_merge?partition_prefix=$(date -u +%Y_%m)" >/dev/null || true
  sleep 5
  bench_stop "$VM_PID"
  after=$(dir_bytes "$VM_DIR/data")
  echo "| victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null) | $(fmt0 "$acked") | $(fmt1 "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')") | $(fmt0 $((after - base))) | $(awk -v b=$((after - base)) -v n="$acked" 'BEGIN {printf "%.2f", n ? b / n : 0}') | data/ after flush + force_merge |"
  rm -rf "$VM_DIR"
else
  echo "| victoria-metrics | not installed | | | | |"
fi
