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
# A step "falls behind" when it has errors, no acks, or ack p99 above the
# knee; later steps are skipped unless --all. With --runs N each figure is
# the median of N runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

duration=30s runs=1 knee=2000 all=0 victoria=1
steps="1x1000 10x100 10x1000 100x100 100x1000"
if ((SMOKE)); then duration=2s steps="1x100 4x100"; fi
while (($#)); do
  case $1 in
    --duration) duration=$2; shift ;;
    --runs) runs=$2; shift ;;
    --steps) steps=$2; shift ;;
    --knee-p99-ms) knee=$2; shift ;;
    --all) all=1 ;;
    --no-victoria) victoria=0 ;;
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
  if ! loadgen "${args[@]}" --agents "$agents" --series "$series" --mode max --duration "$duration"; then
    echo "steward-loadgen failed ($target ${agents}x$series)" >&2
    return 1
  fi
  t1=$(now_s) c1=$(cpu_ticks "$pid") rss=$(rss_kib "$pid")
  bench_stop "$pid"
  if [[ $target == steward ]]; then rm -rf "$COLLECTOR_DIR"; else rm -rf "$VM_DIR"; fi
  STEP_RESULT="$(kv samples_per_s 0) $(kv ack_p50_ms) $(kv ack_p99_ms) $(percent $((c1 - c0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')") $(mib "$rss") $(kv errors 0) $(kv batches_unacked 0) $(kv loadgen_cpu_percent 0)"
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
      read -r r a b c m e u o <<<"$STEP_RESULT"
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

echo "## Ingest"
echo
machine_line
echo
echo "Command: \`bench/ingest.sh $BENCH_CMDLINE\`"
table steward
if ((victoria)) && command -v victoria-metrics >/dev/null; then
  table victoria
  echo
  echo "VictoriaMetrics: Debian's victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null), Prometheus text import over HTTP/1.1 (one request in flight per connection); it acknowledges before its data is durable."
else
  echo
  echo "VictoriaMetrics: not installed (apt-get install victoria-metrics for the side-by-side figures)."
fi
