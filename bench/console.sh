#!/usr/bin/env bash
# What the web console asks the collector for, timed at fleet size: AGENTS
# simulated agents (each with an inventory, so each becomes an asset) plus
# one agent holding a week of history, then every read the console makes on
# its overview and on a host's charts, 20 times each over HTTP. A rule on
# loadgen.m0 with 5 % of its samples breaching leaves about a thousand
# incidents open, so the incident reads have something to count.
#
# Usage: bench/console.sh [--smoke] [--agents 10000] [--days 7]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

agents=10000 days=7
if ((SMOKE)); then agents=20 days=1; fi
while (($#)); do
  case $1 in
    --agents) agents=$2; shift ;;
    --days) days=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-loadgen steward-collector

echo "## Console reads"
echo
machine_line
echo
start_collector console $'[[rule]]\nname = "loadgen"\nmetric = "loadgen.m0"\nop = ">"\nthreshold = 90\nseverity = "major"'
# The fleet: every agent says hello with an inventory and sends two batches.
loadgen --addr "$GRPC" --dir "$COLLECTOR_DIR" --id-prefix fleet --agents "$agents" --series 20 \
  --points 2 --interval 10s --mode max --inventory --assets --connect-concurrency 256 --duration 600s \
  --breach-rate 0.05
# The charted host: 8 series, a point every 10 s for DAYS days, ending now.
points=$((days * 8640))
if ((SMOKE)); then points=360; fi
loadgen --addr "$GRPC" --dir "$COLLECTOR_DIR" --id-prefix week --agents 1 --series 8 \
  --points "$points" --interval 10s --mode max --window 8 --duration 600s
# The asset service files inventories in the background: wait for all of them.
token=$(tail -1 "$COLLECTOR_DIR/api-token")
for ((i = 0; i < 600; i++)); do
  in_service=$(curl -fsS -H "Authorization: Bearer $token" "http://$HTTP/api/v1/overview" |
    grep -o '"in_service":[0-9]*' | cut -d: -f2)
  ((in_service >= agents)) && break
  sleep 0.5
done
unresolved=$(curl -fsS -H "Authorization: Bearer $token" "http://$HTTP/api/v1/overview" |
  grep -o '"unresolved":[0-9]*' | cut -d: -f2)
echo "Command: \`bench/console.sh $BENCH_CMDLINE\`: $(fmt0 "$agents") agents with inventories ($(fmt0 "$in_service") assets, $(fmt0 "$unresolved") unresolved incidents), and one agent × 8 series × $(fmt0 "$points") points (10 s apart, $days days)"
echo
echo "| request (as the console makes it) | median ms | max ms | bytes |"
echo "|---|---|---|---|"
row() {
  local median max bytes
  read -r median max bytes < <(http_times 20 "http://$HTTP$2")
  echo "| $1 | $median | $max | $(fmt0 "$bytes") |"
}
now=$(($(date +%s) * 1000))
series="agent=week-0&metric=loadgen.m0&labels=series=0"
row "overview (\`/api/v1/overview\`, every 5 s while shown)" "/api/v1/overview?limit=20"
row "incident list (\`/api/v1/incidents?state=unresolved&limit=200\`)" "/api/v1/incidents?state=unresolved&limit=200"
row "host list (\`/api/v1/assets?order=hostname&limit=500\`)" "/api/v1/assets?order=hostname&limit=500"
row "chart, 1 h raw" "/api/v1/series/query?$series&from=$((now - 3600000))&to=$now"
row "chart, 24 h at 5 m" "/api/v1/series/query?$series&from=$((now - 86400000))&to=$now&step=5m"
row "chart, 24 h at 1 m" "/api/v1/series/query?$series&from=$((now - 86400000))&to=$now&step=1m"
row "chart, $days d at 30 m" "/api/v1/series/query?$series&from=$((now - days * 86400000))&to=$now&step=30m"
row "console page (\`/\`)" "/"
echo
echo "Collector RSS after: $(mib "$(rss_kib "$COLLECTOR_PID")") MiB."
bench_stop "$COLLECTOR_PID"
rm -rf "$COLLECTOR_DIR"
