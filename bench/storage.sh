#!/usr/bin/env bash
# Bytes per sample on disk after loading a fixed data set: AGENTS agents ×
# SERIES series × POINTS points 10 s apart, ending now, with host-like
# values (percent gauges with one decimal, counters, 0/1 states, noisy
# gauges). Measured for whatever store the collector has (every file the
# collector added to its directory, after a clean shutdown), and for
# VictoriaMetrics (its data directory after a flush and a forced merge)
# where Debian's victoria-metrics is installed. The Steward "aged" row is
# the same data after `steward-collector compact --all` (needs sqlite3 with
# dbstat). Loadgen kinds: 0 percent gauge (1 decimal), 1 counter, 2 0/1
# state, 3 full-precision f64 walk (~50 random bits a point: no lossless
# store gets near 1.5 bytes on it).
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
# Aged: every chunk written and each series-day merged into one format-2
# row (`steward-collector compact --all`), counted as SQLite's pages in use
# by the sample tables and their indexes (a compacted file keeps its freed
# pages until a VACUUM; the log is empty once every chunk is written).
if ! "$BIN/steward-collector" --config "$COLLECTOR_DIR/collector.toml" compact --all 2>"$BENCH_DIR/compact.log"; then
  cat "$BENCH_DIR/compact.log" >&2
  exit 1
fi
if command -v sqlite3 >/dev/null; then
  db=$(find "$COLLECTOR_DIR" \( -name '*.sqlite' -o -name '*.db' \) -print -quit)
  aged=$(sqlite3 "$db" "SELECT sum(pgsize) FROM dbstat WHERE name IN ('chunks', 'rollups', 'sample_log', 'chunks_by_series_time', 'chunks_by_end', 'rollups_by_series_time', 'rollups_by_end')")
  kinds=$(sqlite3 -separator ' ' "$db" "SELECT CAST(substr(s.metric, 10) AS INTEGER) % 4 AS kind, printf('%.2f', 1.0 * sum(length(c.data)) / sum(c.count)) FROM chunks c JOIN series s ON s.id = c.series_id GROUP BY kind ORDER BY kind" | awk '{printf "%skind %s %s", (NR > 1 ? ", " : ""), $1, $2}')
  echo "| steward aged (after \`compact --all\`: chunks + rollups + their indexes) | $(fmt0 "$acked") | | $(fmt0 "$aged") | $(awk -v b="$aged" -v n="$acked" 'BEGIN {printf "%.2f", n ? b / n : 0}') | blob bytes/point by loadgen kind: $kinds |"
else
  echo "| steward aged | not measured: needs the sqlite3 command (apt-get install sqlite3) | | | | |"
fi
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

# History over HTTP (issue #10: "24 h of one series at 1-minute step in
# ≤ 50 ms"): one simulated agent with a day of points (16 series, 10 s
# apart), then GET /api/v1/series/query for 24 h of one series at step=1m,
# 20 times, while the points sit in the head and written chunks, and again
# after `compact --all` from the day's merged row.
day_points=8640
if ((SMOKE)); then day_points=60; fi
# time_queries LABEL: median and max wall time of 20 queries (curl's total).
time_queries() {
  local to from median max
  to=$(($(date +%s) * 1000 + 60000)) from=$((to - 86400000 - 120000))
  read -r median max _ < <(http_times 20 \
    "http://$HTTP/api/v1/series/query?agent=day-0&metric=loadgen.m0&labels=series=0&from=$from&to=$to&step=1m")
  echo "| $1 | $(grep -o '"t":' "$BENCH_DIR/answer.json" | wc -l) | $median | $max |"
}
echo
echo "### History query over HTTP"
echo
echo "One agent × 16 series × $day_points points 10 s apart; \`GET /api/v1/series/query\` for 24 h of one series at \`step=1m\`, 20 times."
echo
echo "| read from | points answered | median ms | max ms |"
echo "|---|---|---|---|"
start_collector history
loadgen --addr "$GRPC" --dir "$COLLECTOR_DIR" --id-prefix day --agents 1 --series 16 \
  --points "$day_points" --interval 10s --mode max --window 8 --duration 600s
time_queries "head + written chunks"
bench_stop "$COLLECTOR_PID"
if ! "$BIN/steward-collector" --config "$COLLECTOR_DIR/collector.toml" compact --all 2>"$BENCH_DIR/compact.log"; then
  cat "$BENCH_DIR/compact.log" >&2
  exit 1
fi
restart_collector
time_queries "after \`compact --all\` (day rows)"
bench_stop "$COLLECTOR_PID"
rm -rf "$COLLECTOR_DIR"
