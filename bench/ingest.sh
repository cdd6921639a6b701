#!/usr/bin/env bash
# Ingest throughput: steward-loadgen at increasing agents × batch sizes
# against a fresh collector per step (TLS, loopback, as fast as acks allow),
# until acks fall behind. Collector CPU% and RSS from /proc per step. Where
# Debian's victoria-metrics is installed, the same samples go to its
# Prometheus import API for a side-by-side table.
#
# Usage: bench/ingest.sh [--smoke] [--duration 30s] [--runs 1]
#                        [--steps "1x1000 10x100 10x1000 100x100 100x1000"]
#                        [--knee-p99-ms 2000] [--all] [--no-victoria]
#                        [--offered 500000] [--paced "10 100 1000"] [--paced-series 100000]
# A step "falls behind" when it has errors, no acks, or ack p99 above the
# knee; later steps are skipped unless --all. With --runs N each figure is
# the median of N runs.
#
# The closed-loop steps above measure the most a collector takes; ack
# latency there is queueing (4 batches in flight per stream: at 100 × 1000
# that is 400,000 samples waiting, so by Little's law no server at 500k/s
# answers them in under 0.8 s). The paced table offers a fixed rate instead:
# --paced-series series in all (like the closed loop's 100 × 1000), split
# over N streams, every series sampled so that --offered samples/s arrive
# (100,000 series at 500,000/s: each stream sends its share every 200 ms),
# and reports the ack latency at that rate: issue #10's "≥ 500,000
# samples/s from 10 to 1,000 streams, ack p99 ≤ 250 ms".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

duration=30s runs=1 knee=2000 all=0 victoria=1
steps="1x1000 10x100 10x1000 100x100 100x1000"
offered=500000 paced="10 100 1000" paced_series=100000
if ((SMOKE)); then duration=2s steps="1x100 4x100" offered=2000 paced="2" paced_series=200; fi
while (($#)); do
  case $1 in
    --duration) duration=$2; shift ;;
    --runs) runs=$2; shift ;;
    --steps) steps=$2; shift ;;
    --knee-p99-ms) knee=$2; shift ;;
    --all) all=1 ;;
    --no-victoria) victoria=0 ;;
    --offered) offered=$2; shift ;;
    --paced) paced=$2; shift ;;
    --paced-series) paced_series=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-loadgen steward-collector

# A rule on every breachable series, so rules are evaluated as in production.
rules=$'[[rule]]\nname = "loadgen"\nmetric = "loadgen.m0"\nop = ">"\nthreshold = 90\nseverity = "major"'

# run_step TARGET AGENTS SERIES: one run; sets STEP_RESULT to
# "samples/s p50 p99 cpu% rss_mib errors unacked loadgen_cpu%". Runs in this
# shell (not a subshell) so the EXIT trap knows every process it started.
run_step() {
  local target=$1 agents=$2 series=$3 pid addr args t0 c0 t1 c1 rss
  local mode=(--mode max)
  if [[ -n ${4:-} ]]; then mode=(--mode paced --interval "$4"); fi
  if [[ $target == steward ]]; then
    start_collector "c-$agents-$series-$RANDOM" "$rules"
    pid=$COLLECTOR_PID
    args=(--addr "$GRPC" --dir "$COLLECTOR_DIR")
  else
    start_victoria "vm-$agents-$series-$RANDOM"
    pid=$VM_PID
    args=(--target victoria --addr "$VM_ADDR")
  fi
  t0=$(now_s) c0=$(cpu_ticks "$pid")
  if ! loadgen "${args[@]}" --agents "$agents" --series "$series" "${mode[@]}" --duration "$duration"; then
    echo "steward-loadgen failed ($target ${agents}x$series)" >&2
    return 1
  fi
  t1=$(now_s) c1=$(cpu_ticks "$pid") rss=$(rss_kib "$pid")
  bench_stop "$pid"
  if [[ $target == steward ]]; then rm -rf "$COLLECTOR_DIR"; else rm -rf "$VM_DIR"; fi
  STEP_RESULT="$(kv samples_per_s 0) $(kv ack_p50_ms) $(kv ack_p99_ms) $(percent $((c1 - c0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')") $(mib "$rss") $(kv errors 0) $(kv batches_unacked 0) $(kv loadgen_cpu_percent 0) $(kv ticks_behind 0)"
}

# table TARGET: runs the steps, prints a markdown table, stops at the knee.
table() {
  local target=$1 step agents series run
  echo
  echo "### $target ($duration per step, median of $runs)"
  echo
  echo "| agents × samples per batch | acknowledged samples/s | ack p50 ms | ack p99 ms | CPU % | RSS MiB | errors | loadgen CPU % | notes |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for step in $steps; do
    agents=${step%x*} series=${step#*x}
    local rates=() p50s=() p99s=() cpus=() rsss=() errs=() unacked=() own=()
    for ((run = 0; run < runs; run++)); do
      run_step "$target" "$agents" "$series" || return 1
      read -r r a b c m e u o _ <<<"$STEP_RESULT"
      rates+=("$r") p50s+=("$a") p99s+=("$b") cpus+=("$c") rsss+=("$m") errs+=("$e") unacked+=("$u") own+=("$o")
    done
    local rate p99 errors note=""
    rate=$(median "${rates[@]}") p99=$(median "${p99s[@]}") errors=$(median "${errs[@]}")
    if [[ $errors != 0 || $rate == 0 || $p99 == - ]] || awk -v p="$p99" -v k="$knee" 'BEGIN {exit !(p > k)}'; then
      note="falls behind"
    fi
    echo "| $agents × $series | $(fmt0 "$rate") | $(fmt1 "$(median "${p50s[@]}")") | $(fmt1 "$p99") | $(median "${cpus[@]}") | $(median "${rsss[@]}") | $errors | $(fmt0 "$(median "${own[@]}")") | $note |"
    if [[ -n $note ]] && ((!all)); then
      echo
      echo "Stopped at the knee (use --all to run every step)."
      break
    fi
  done
}

# paced_table: a fixed offered rate over increasing stream counts.
paced_table() {
  local streams batch interval_ms run
  interval_ms=$(awk -v s="$paced_series" -v r="$offered" 'BEGIN {printf "%d", s * 1000 / r}')
  ((interval_ms >= 1)) || interval_ms=1
  echo
  echo "### steward, paced: $(fmt0 "$offered") samples/s offered over $(fmt0 "$paced_series") series, every series every ${interval_ms} ms ($duration per step, median of $runs)"
  echo
  echo "| streams × samples per batch | batch interval per stream | acknowledged samples/s | ack p50 ms | ack p99 ms | ticks behind | CPU % | RSS MiB | errors | notes |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for streams in $paced; do
    batch=$((paced_series / streams))
    local rates=() p50s=() p99s=() cpus=() rsss=() errs=() behind=()
    for ((run = 0; run < runs; run++)); do
      run_step steward "$streams" "$batch" "${interval_ms}ms" || return 1
      read -r r a b c m e u o t <<<"$STEP_RESULT"
      rates+=("$r") p50s+=("$a") p99s+=("$b") cpus+=("$c") rsss+=("$m") errs+=("$e") behind+=("$t")
    done
    local rate p99 note=""
    rate=$(median "${rates[@]}") p99=$(median "${p99s[@]}")
    if [[ $p99 == - ]] || awk -v p="$p99" -v r="$rate" -v o="$offered" 'BEGIN {exit !(p > 250 || r < 0.95 * o)}'; then
      note="misses (p99 > 250 ms or < 95% of offered acknowledged)"
    fi
    echo "| $streams × $batch | ${interval_ms} ms | $(fmt0 "$rate") | $(fmt1 "$(median "${p50s[@]}")") | $(fmt1 "$p99") | $(median "${behind[@]}") | $(median "${cpus[@]}") | $(median "${rsss[@]}") | $(median "${errs[@]}") | $note |"
  done
}

echo "## Ingest"
echo
machine_line
echo
echo "Command: \`bench/ingest.sh $BENCH_CMDLINE\`"
table steward
if [[ -n $paced ]]; then paced_table; fi
if ((victoria)) && command -v victoria-metrics >/dev/null; then
  table victoria
  echo
  echo "VictoriaMetrics: Debian's victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null), Prometheus text import over HTTP/1.1 (one request in flight per connection); it acknowledges before its data is durable."
else
  echo
  echo "VictoriaMetrics: not installed (apt-get install victoria-metrics for the side-by-side figures)."
fi
