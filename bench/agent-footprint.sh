#!/usr/bin/env bash
# Agent footprint: a collector plus two steward-agents on loopback for a
# while, then RSS, peak RSS and CPU% from /proc, next to Debian's
# prometheus-node-exporter (scraped every 10 s with curl, as Prometheus
# would) and zabbix-agent2 (passive, idle) where installed.
#   steward plain:  host metrics, inventory and patch scans (the defaults)
#   steward checks: the same plus ICMP ping to 127.0.0.1 and 5 port checks
#                   (2 open, one of them TLS; 3 closed)
# Agents send every 10 s (the shipped default).
#
# Usage: bench/agent-footprint.sh [--smoke] [--seconds 300]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"

seconds=300
((SMOKE)) && seconds=5
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift ;;
    --minutes) seconds=$(($2 * 60)); shift ;;
    [0-9]*) seconds=$1 ;; # the old tests/soak/agent_footprint.sh DURATION
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bench_build steward-agent steward-collector

start_collector collector
dir=$COLLECTOR_DIR
# Two agents from one template: they share the token, not the local agent's certificate.
token=$(grep -v '^#' "$dir/agent-tokens" | tail -1)
sed -i -e "s/^cert = \"agent.pem\"$/token = \"$token\"/" -e '/^key = "agent.key"$/d' "$dir/agent.toml"
sed 's/state_dir = "agent-state"/state_dir = "plain-state"/' "$dir/agent.toml" >"$dir/plain.toml"
{
  sed 's/state_dir = "agent-state"/state_dir = "checks-state"/' "$dir/agent.toml"
  printf '\n[[ping]]\ntarget = "127.0.0.1"\n'
  printf '\n[[port]]\ntarget = "%s"\ntls = true\nca = "ca.pem"\nserver_name = "127.0.0.1"\n' "$GRPC"
  printf '\n[[port]]\ntarget = "%s"\n' "$HTTP"
  for port in 1 2 3; do printf '\n[[port]]\ntarget = "127.0.0.1:%s"\n' "$port"; done
} >"$dir/checks.toml"
# The agent template points at port 0 until the collector has one.
sed -i "s|https://127.0.0.1:0|https://$GRPC|" "$dir/plain.toml" "$dir/checks.toml"

names=() pids=() bins=() logs=()
bench_spawn "$dir/plain.log" "$BIN/steward-agent" --config "$dir/plain.toml"
names+=("steward-agent (plain)") logs+=("$dir/plain.log") pids+=("$LAST_PID") bins+=("$BIN/steward-agent")
bench_spawn "$dir/checks.log" "$BIN/steward-agent" --config "$dir/checks.toml"
names+=("steward-agent (ping + 5 ports)") logs+=("$dir/checks.log") pids+=("$LAST_PID") bins+=("$BIN/steward-agent")

peers=""
if command -v prometheus-node-exporter >/dev/null; then
  port=$(free_port)
  bench_spawn "$dir/node-exporter.log" prometheus-node-exporter --web.listen-address="127.0.0.1:$port"
  names+=("prometheus-node-exporter $(dpkg-query -W -f='${Version}' prometheus-node-exporter 2>/dev/null) (scraped every 10 s)")
  pids+=("$LAST_PID") bins+=("$(command -v prometheus-node-exporter)") logs+=("$dir/node-exporter.log")
  bench_spawn "$dir/scrape.log" bash -c "while :; do curl -fsS -o /dev/null http://127.0.0.1:$port/metrics || true; sleep 10; done"
else
  peers+=" prometheus-node-exporter: not installed."
fi
zabbix=$(command -v zabbix_agent2 || true)
if [[ -n $zabbix ]]; then
  port=$(free_port 32767) # zabbix refuses ListenPort above 32767
  cat >"$dir/zabbix_agent2.conf" <<CONF
Server=127.0.0.1
ServerActive=
ListenIP=127.0.0.1
ListenPort=$port
Hostname=bench
LogType=file
LogFile=$dir/zabbix_agent2.log
PidFile=$dir/zabbix_agent2.pid
ControlSocket=$dir/zabbix_agent2.sock
CONF
  bench_spawn "$dir/zabbix.out" "$zabbix" -c "$dir/zabbix_agent2.conf" -f
  names+=("zabbix-agent2 $(dpkg-query -W -f='${Version}' zabbix-agent2 2>/dev/null) (passive, idle)")
  pids+=("$LAST_PID") bins+=("$zabbix") logs+=("$dir/zabbix.out")
else
  peers+=" zabbix-agent2: not installed."
fi

start=$(now_s)
declare -A ticks0
for i in "${!pids[@]}"; do ticks0[$i]=$(cpu_ticks "${pids[$i]}"); done
sleep "$seconds"
elapsed=$(awk -v a="$start" -v b="$(now_s)" 'BEGIN {print b - a}')

echo "## Agent footprint"
echo
machine_line
echo
echo "Command: \`bench/agent-footprint.sh $BENCH_CMDLINE\` ($seconds s, measured from each process's start; CPU over the window)"
echo
echo "| agent | RSS MiB | peak RSS MiB | CPU % of one core | binary MB | RSS vs steward plain |"
echo "|---|---|---|---|---|---|"
base_rss=
for i in "${!pids[@]}"; do
  pid=${pids[$i]}
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "| ${names[$i]} | exited early | | | | |"
    echo "${names[$i]} exited early; its log ends:" >&2
    tail -5 "${logs[$i]}" >&2
    continue
  fi
  rss=$(rss_kib "$pid") hwm=$(hwm_kib "$pid")
  cpu=$(awk -v t=$(($(cpu_ticks "$pid") - ticks0[$i])) -v s="$elapsed" 'BEGIN {printf "%.3f", t / s}')
  size=$(stat -L -c %s "${bins[$i]}")
  base_rss=${base_rss:-$rss}
  echo "| ${names[$i]} | $(fmt1 "$(awk -v k="$rss" 'BEGIN {print k / 1024}')") | $(fmt1 "$(awk -v k="$hwm" 'BEGIN {print k / 1024}')") | $cpu | $(fmt1 "$(awk -v b="$size" 'BEGIN {print b / 1e6}')") | $(awk -v a="$rss" -v b="$base_rss" 'BEGIN {printf "%.2f×", a / b}') |"
done
[[ -n $peers ]] && echo && echo "Peers:$peers"
echo
grep -h "Patch scan finished" "$dir/plain.log" | head -1 | sed 's/\x1b\[[0-9;]*m//g' || true
