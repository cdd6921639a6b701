#!/usr/bin/env bash
# One collector on SQLite next to two collectors sharing one PostgreSQL
# database (issue #15's closing figures), from the project's load generator:
#  - ingest: AGENTS agents × SERIES series at full speed; with two
#    collectors, half the agents stream to each (two loadgen processes at
#    once); acknowledged samples/s summed, ack p99 the worse of the two;
#  - alert latency: BREACH_AGENTS agents × SERIES series, every `loadgen.m0`
#    series breaching in one batch; breach→incident p50/p99 from
#    /api/v1/incidents (with two collectors, the worse of the two halves).
#
# PostgreSQL: STEWARD_TEST_POSTGRES (an admin URL), else the server on
# 127.0.0.1:5432 (user postgres); a database is created for each run and
# dropped afterwards. Without a server the PostgreSQL rows are skipped, with
# the reason printed.
#
# Usage: bench/cluster.sh [--smoke] [--rounds 3] [--agents 20] [--series 1000]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

rounds=3 agents=20 series=1000 breach_agents=16 duration=20s
if ((SMOKE)); then rounds=1 agents=2 series=50 breach_agents=2 duration=2s; fi
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --agents) agents=$2; shift ;;
    --series) series=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-loadgen steward-collector

admin_url=${STEWARD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
pg_reason=
if ! command -v psql >/dev/null; then
  pg_reason="psql is not installed"
elif ! psql "$admin_url" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  pg_reason="no PostgreSQL server at ${admin_url%%@*}@… (set STEWARD_TEST_POSTGRES)"
fi

rules=$'[[rule]]\nname = "loadgen"\nmetric = "loadgen.m0"\nop = ">"\nthreshold = 90\nseverity = "major"'
DATABASES=()
drop_databases() {
  local name
  for name in "${DATABASES[@]+"${DATABASES[@]}"}"; do
    psql "$admin_url" -qAtc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap 'bench_cleanup; drop_databases' EXIT

# A fresh database (dropped on exit); sets DB_URL. Not in a subshell, so
# the EXIT trap knows it.
new_database() {
  local name="steward_bench_$RANDOM$RANDOM"
  psql "$admin_url" -qAtc "CREATE DATABASE $name" >/dev/null
  DATABASES+=("$name")
  local base=${admin_url%%\?*}
  DB_URL="${base%/*}/$name?sslmode=disable"
}

# start_pair URL: two collectors from one init dir (one CA, one agent token)
# on database URL. Sets A_GRPC A_HTTP A_PID B_GRPC B_HTTP B_PID COLLECTOR_DIR.
start_pair() {
  local url=$1
  start_collector "pair-$RANDOM" "$rules"
  bench_stop "$COLLECTOR_PID"
  local config=$COLLECTOR_DIR/collector.toml
  sed -i "s|^sqlite = .*|postgres = \"$url\"\ninstance = \"collector-a\"|" "$config"
  sed -i 's|^\[auth\]$|[auth]\napi_token_file = "api-token"|' "$config"
  sed "s|^instance = \"collector-a\"|instance = \"collector-b\"|" "$config" >"$COLLECTOR_DIR/collector-b.toml"
  local name line
  for name in a b; do
    local file=$config log=$COLLECTOR_DIR/collector-$name.log
    [[ $name == b ]] && file=$COLLECTOR_DIR/collector-b.toml
    RUST_LOG=${RUST_LOG:-warn,steward_collector=info} NO_COLOR=1 \
      bench_spawn "$log" "$BIN/steward-collector" --config "$file"
    local pid=$LAST_PID i
    for ((i = 0; i < 600; i++)); do
      line=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -m1 'Collector listening.' || true)
      [[ -n $line ]] && break
      kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
      sleep 0.1
    done
    local grpc http
    grpc=$(grep -o 'grpc_addr=[^ ]*' <<<"$line" | cut -d= -f2)
    http=$(grep -o 'http_addr=[^ ]*' <<<"$line" | cut -d= -f2)
    if [[ $name == a ]]; then A_GRPC=$grpc A_HTTP=$http A_PID=$pid; else B_GRPC=$grpc B_HTTP=$http B_PID=$pid; fi
  done
}

# pair_loadgen ARGS...: half the agents to each collector, at once; sets
# PAIR_RATE (sum of samples/s), PAIR_P99 (worse ack p99), PAIR_ERRORS,
# PAIR_B50/PAIR_B99 (worse breach→incident p50/p99), PAIR_SEEN/PAIR_BREACHES.
pair_loadgen() {
  local half=$1; shift
  local ra=$BENCH_DIR/a.$RANDOM rb=$BENCH_DIR/b.$RANDOM
  "$BIN/steward-loadgen" --addr "$A_GRPC" --http "$A_HTTP" --dir "$COLLECTOR_DIR" --agents "$half" \
    --id-prefix lg-a "$@" --kv >"$ra" &
  local pa=$!
  "$BIN/steward-loadgen" --addr "$B_GRPC" --http "$B_HTTP" --dir "$COLLECTOR_DIR" --agents "$half" \
    --id-prefix lg-b "$@" --kv >"$rb" &
  local pb=$!
  wait "$pa" && wait "$pb"
  local REPORT_A=$ra REPORT_B=$rb
  REPORT=$REPORT_A; local a_rate a_p99 a_err a_b50 a_b99 a_seen a_br
  a_rate=$(kv samples_per_s 0) a_p99=$(kv ack_p99_ms 0) a_err=$(kv errors 0)
  a_b50=$(kv breach_to_incident_p50_ms 0) a_b99=$(kv breach_to_incident_p99_ms 0)
  a_seen=$(kv incidents_seen 0) a_br=$(kv breaches 0)
  REPORT=$REPORT_B
  PAIR_RATE=$(awk -v a="$a_rate" -v b="$(kv samples_per_s 0)" 'BEGIN {print a + b}')
  PAIR_P99=$(awk -v a="$a_p99" -v b="$(kv ack_p99_ms 0)" 'BEGIN {print (a > b ? a : b)}')
  PAIR_ERRORS=$((a_err + $(kv errors 0)))
  PAIR_B50=$(awk -v a="$a_b50" -v b="$(kv breach_to_incident_p50_ms 0)" 'BEGIN {print (a > b ? a : b)}')
  PAIR_B99=$(awk -v a="$a_b99" -v b="$(kv breach_to_incident_p99_ms 0)" 'BEGIN {print (a > b ? a : b)}')
  PAIR_SEEN=$((a_seen + $(kv incidents_seen 0)))
  PAIR_BREACHES=$((a_br + $(kv breaches 0)))
}

echo "## One collector on SQLite vs two on one PostgreSQL"
echo
machine_line
echo
echo "Command: \`bench/cluster.sh $BENCH_CMDLINE\`"
echo
echo "| setup | round | ingest: $agents agents × $series, samples/s | ack p99 ms | errors | alerts: $breach_agents × $series breaching, incidents seen | breach→incident p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|---|"
s_rates=() s_b99s=() p_rates=() p_b99s=()
for ((round = 1; round <= rounds; round++)); do
  start_collector "sqlite-$round" "$rules"
  loadgen --addr "$GRPC" --dir "$COLLECTOR_DIR" --agents "$agents" --series "$series" --mode max --duration "$duration"
  rate=$(kv samples_per_s 0) p99=$(kv ack_p99_ms) errors=$(kv errors 0)
  bench_stop "$COLLECTOR_PID"; rm -rf "$COLLECTOR_DIR"
  start_collector "sqlite-alert-$round" "$rules"
  loadgen --addr "$GRPC" --http "$HTTP" --dir "$COLLECTOR_DIR" --agents "$breach_agents" --series "$series" \
    --points 1 --breach-rate 1 --mode max --duration 30s
  echo "| 1 × SQLite | $round | $(fmt0 "$rate") | $(fmt1 "$p99") | $errors | $(kv incidents_seen 0) of $(kv breaches) | $(fmt1 "$(kv breach_to_incident_p50_ms)") | $(fmt1 "$(kv breach_to_incident_p99_ms)") |"
  s_rates+=("$rate") s_b99s+=("$(kv breach_to_incident_p99_ms 0)")
  bench_stop "$COLLECTOR_PID"; rm -rf "$COLLECTOR_DIR"

  [[ -n $pg_reason ]] && continue
  new_database
  start_pair "$DB_URL"
  pair_loadgen $((agents / 2)) --series "$series" --mode max --duration "$duration"
  rate=$PAIR_RATE p99=$PAIR_P99 errors=$PAIR_ERRORS
  bench_stop "$A_PID"; bench_stop "$B_PID"; rm -rf "$COLLECTOR_DIR"
  new_database
  start_pair "$DB_URL"
  pair_loadgen $((breach_agents / 2)) --series "$series" --points 1 --breach-rate 1 --mode max --duration 30s
  echo "| 2 × PostgreSQL | $round | $(fmt0 "$rate") | $(fmt1 "$p99") | $errors | $PAIR_SEEN of $PAIR_BREACHES | $(fmt1 "$PAIR_B50") | $(fmt1 "$PAIR_B99") |"
  p_rates+=("$rate") p_b99s+=("$PAIR_B99")
  if [[ $PAIR_SEEN != "$PAIR_BREACHES" ]]; then
    echo "round $round: only $PAIR_SEEN of $PAIR_BREACHES incidents seen with two collectors" >&2
    exit 1
  fi
  bench_stop "$A_PID"; bench_stop "$B_PID"; rm -rf "$COLLECTOR_DIR"
done
echo "| 1 × SQLite | median | $(fmt0 "$(median "${s_rates[@]}")") | | | | | $(fmt1 "$(median "${s_b99s[@]}")") |"
if [[ -n $pg_reason ]]; then
  echo
  echo "PostgreSQL rows skipped: $pg_reason."
else
  echo "| 2 × PostgreSQL | median | $(fmt0 "$(median "${p_rates[@]}")") | | | | | $(fmt1 "$(median "${p_b99s[@]}")") |"
  echo
  echo "PostgreSQL: $(psql "$admin_url" -qAtc 'SHOW server_version' 2>/dev/null) on loopback, default settings (fsync on, synchronous_commit on)."
fi
