#!/usr/bin/env bash
# Alert latency with 1,000 series breaching at once:
#  1. end to end from outside: steward-loadgen sends one batch per agent in
#     which every `loadgen.m0` series breaches (16 agents × 1,000 series =
#     1,008 breaching series) to a collector with a rule `loadgen.m0 > 90`;
#     latency = incident `opened_at` (from /api/v1/incidents) − send time.
#  2. the collector's own benches (in-process collector, real TLS):
#     collector/benches/incident_latency.rs (breach → incident committed)
#     and webhook_latency.rs (breach → webhook received on loopback).
#
# Usage: bench/alert-latency.sh [--smoke] [--rounds 5] [--no-cargo-bench]
#                               [--with-cargo-bench]
# Smoke mode skips the cargo benches (they need a build .ci/run does not
# make; clippy --all-targets still compiles them); --with-cargo-bench runs
# them in the dev profile with small counts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

rounds=5 agents=16 series=1000 cargo_bench=1
if ((SMOKE)); then rounds=1 agents=2 series=160 cargo_bench=0; fi
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --no-cargo-bench) cargo_bench=0 ;;
    --with-cargo-bench) cargo_bench=1 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-loadgen steward-collector

echo "## Alert latency"
echo
machine_line
echo
echo "Command: \`bench/alert-latency.sh $BENCH_CMDLINE\`"
echo
echo "### From outside: $agents agents × $series series, every \`loadgen.m0\` series breaching in one batch"
echo
echo "| round | breaching series | incidents seen | breach→incident p50 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|"
rules=$'[[rule]]\nname = "loadgen"\nmetric = "loadgen.m0"\nop = ">"\nthreshold = 90\nseverity = "major"'
p50s=() p99s=()
for ((round = 1; round <= rounds; round++)); do
  start_collector "c-$round" "$rules"
  loadgen --addr "$GRPC" --http "$HTTP" --dir "$COLLECTOR_DIR" --agents "$agents" --series "$series" \
    --points 1 --breach-rate 1 --mode max --duration 30s
  echo "| $round | $(kv breaches) | $(kv incidents_seen) | $(fmt1 "$(kv breach_to_incident_p50_ms)") | $(fmt1 "$(kv breach_to_incident_p99_ms)") | $(fmt1 "$(kv breach_to_incident_max_ms)") |"
  if [[ $(kv incidents_seen 0) != "$(kv breaches)" ]]; then
    echo "round $round: only $(kv incidents_seen 0) of $(kv breaches) incidents seen" >&2
    exit 1
  fi
  p50s+=("$(kv breach_to_incident_p50_ms)") p99s+=("$(kv breach_to_incident_p99_ms)")
  bench_stop "$COLLECTOR_PID"
  rm -rf "$COLLECTOR_DIR"
done
echo "| median | | | $(fmt1 "$(median "${p50s[@]}")") | $(fmt1 "$(median "${p99s[@]}")") | |"
echo
echo "Resolution: opened_at has millisecond precision and both clocks are this machine's."

if ((cargo_bench)); then
  profile=()
  ((SMOKE)) && profile=(--profile dev)
  [[ $PROFILE == debug ]] && profile=(--profile dev)
  echo
  echo "### Collector benches (in-process collector, real TLS; \`cargo bench -p steward-collector ${profile[*]}\`)"
  echo
  echo '```'
  if ((SMOKE)); then
    export SERIES=100 ROUNDS=1
  else
    export SERIES=1000 ROUNDS=$rounds
  fi
  (cd "$BENCH_ROOT" && cargo bench -q -p steward-collector "${profile[@]}" --bench incident_latency 2>/dev/null)
  ((SMOKE)) && export ROUNDS=3 || export ROUNDS=30
  (cd "$BENCH_ROOT" && cargo bench -q -p steward-collector "${profile[@]}" --bench webhook_latency 2>/dev/null)
  echo '```'
fi
