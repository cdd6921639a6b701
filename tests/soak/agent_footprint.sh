#!/usr/bin/env bash
# Agent footprint soak: a release collector plus two release agents on
# loopback for DURATION seconds (default 300), then RSS and CPU from /proc.
#   agent "plain":  host metrics, inventory and patch scans (defaults)
#   agent "checks": the same plus ICMP ping to 127.0.0.1 and 5 port checks
#                   (2 open, one of them TLS; 3 closed), interval 10s
# Usage: tests/soak/agent_footprint.sh [DURATION]   (builds with --release first)
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-300}
cargo build --release -q -p steward-agent -p steward-collector
bin=${CARGO_TARGET_DIR:-target}/release
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
grpc=127.0.0.1:$((20000 + RANDOM % 20000))
http=127.0.0.1:$((40000 + RANDOM % 20000))
"$bin/steward-collector" init "$dir" --grpc-listen "$grpc" --http-listen "$http" >/dev/null
"$bin/steward-collector" --config "$dir/collector.toml" 2>"$dir/collector.log" &
collector=$!
sleep 1
sed 's/state_dir = "agent-state"/state_dir = "plain-state"/' "$dir/agent.toml" >"$dir/plain.toml"
{
  sed 's/state_dir = "agent-state"/state_dir = "checks-state"/' "$dir/agent.toml"
  printf '\n[[ping]]\ntarget = "127.0.0.1"\n'
  printf '\n[[port]]\ntarget = "%s"\ntls = true\nca = "ca.pem"\nserver_name = "127.0.0.1"\n' "$grpc"
  printf '\n[[port]]\ntarget = "%s"\n' "$http"
  for port in 1 2 3; do printf '\n[[port]]\ntarget = "127.0.0.1:%s"\n' "$port"; done
} >"$dir/checks.toml"
"$bin/steward-agent" --config "$dir/plain.toml" 2>"$dir/plain.log" &
plain=$!
"$bin/steward-agent" --config "$dir/checks.toml" 2>"$dir/checks.log" &
checks=$!
start=$(date +%s.%N)
sleep "$duration"
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
ticks=$(getconf CLK_TCK)
report() {
  local name=$1 pid=$2
  local rss hwm cpu
  rss=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)
  hwm=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)
  cpu=$(awk -v t="$ticks" '{print ($14 + $15) / t}' /proc/"$pid"/stat)
  printf '%-10s RSS %6d KiB  peak %6d KiB  CPU %6.2f s over %.0f s = %.3f%%\n' \
    "$name" "$rss" "$hwm" "$cpu" "$elapsed" "$(echo "$cpu * 100 / $elapsed" | bc -l)"
}
report plain "$plain"
report checks "$checks"
report collector "$collector"
grep -h "Patch scan finished" "$dir/plain.log" | head -1
ls -l "$bin/steward-agent" "$bin/steward-collector" | awk '{print $5, $9}'
