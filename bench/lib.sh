# Shared helpers for bench/*.sh (sourced, not run). Everything listens on
# loopback, lives in one temp dir and is stopped by the EXIT trap.
#
# Each script calls `bench_init "$@"`, which understands:
#   --smoke          a few seconds, debug binaries (what .ci/run builds)
#   --profile NAME   debug or release (default: release, smoke: debug)
#   --no-build       use the binaries already in target/<profile>/
# and leaves the remaining arguments in BENCH_ARGS.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=0
PROFILE=
BUILD=1
BENCH_ARGS=()
BENCH_PIDS=()
BENCH_DIR=

bench_init() {
  BENCH_CMDLINE="$*"
  while (($#)); do
    case $1 in
      --smoke) SMOKE=1 ;;
      --profile) PROFILE=$2; shift ;;
      --no-build) BUILD=0 ;;
      *) BENCH_ARGS+=("$1") ;;
    esac
    shift
  done
  if [[ -z $PROFILE ]]; then
    if ((SMOKE)); then PROFILE=debug; else PROFILE=release; fi
  fi
  BIN=${CARGO_TARGET_DIR:-$BENCH_ROOT/target}/$PROFILE
  BENCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/steward-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# Builds the named packages for $PROFILE (unless --no-build).
bench_build() {
  ((BUILD)) || return 0
  local flags=()
  [[ $PROFILE == release ]] && flags+=(--release)
  [[ $PROFILE != release && $PROFILE != debug ]] && flags+=(--profile "$PROFILE")
  local packages=()
  for package in "$@"; do packages+=(-p "$package"); done
  (cd "$BENCH_ROOT" && cargo build -q "${flags[@]}" "${packages[@]}")
}

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  [[ -n $BENCH_DIR ]] && rm -rf "$BENCH_DIR"
}

# Starts PROGRAM ARGS... in the background with its output in LOG; sets LAST_PID.
bench_spawn() {
  local log=$1; shift
  : >"$log"
  "$@" >"$log" 2>&1 &
  LAST_PID=$!
  BENCH_PIDS+=("$LAST_PID")
}

# Stops one process we started (SIGTERM, then SIGKILL after 20 s).
bench_stop() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# A free loopback TCP port below MAX (default 50000; racy but fine on a
# benchmark machine).
free_port() {
  local port max=${1:-50000}
  while :; do
    port=$((20000 + RANDOM % (max - 20000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# start_collector NAME [EXTRA_TOML]: `init` into $BENCH_DIR/NAME without the
# default rules, append EXTRA_TOML, start it and wait for its addresses.
# Sets COLLECTOR_DIR, COLLECTOR_PID, GRPC, HTTP.
start_collector() {
  local name=$1 extra=${2:-}
  COLLECTOR_DIR=$BENCH_DIR/$name
  # init logs its migrations at INFO; keep them out of the tables.
  if ! "$BIN/steward-collector" init "$COLLECTOR_DIR" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    >/dev/null 2>"$BENCH_DIR/$name.init.log"; then
    cat "$BENCH_DIR/$name.init.log" >&2
    return 1
  fi
  sed -i 's/^include = \["default-rules.toml"\]$//' "$COLLECTOR_DIR/collector.toml"
  # Simulated agents (loadgen) and copies of agent.toml use the shared token.
  sed -i 's/^# agent_token_file = /agent_token_file = /' "$COLLECTOR_DIR/collector.toml"
  printf '\n%s\n' "$extra" >>"$COLLECTOR_DIR/collector.toml"
  restart_collector
}

# restart_collector: starts the collector of $COLLECTOR_DIR (again) and
# waits for its addresses. Sets COLLECTOR_PID, GRPC, HTTP.
restart_collector() {
  RUST_LOG=${RUST_LOG:-warn,steward_collector=info} NO_COLOR=1 \
    bench_spawn "$COLLECTOR_DIR/collector.log" "$BIN/steward-collector" --config "$COLLECTOR_DIR/collector.toml"
  COLLECTOR_PID=$LAST_PID
  local i line
  for ((i = 0; i < 600; i++)); do
    line=$(sed 's/\x1b\[[0-9;]*m//g' "$COLLECTOR_DIR/collector.log" | grep -m1 'Collector listening.' || true)
    [[ -n $line ]] && break
    if ! kill -0 "$COLLECTOR_PID" 2>/dev/null; then
      echo "collector exited during start-up:" >&2
      cat "$COLLECTOR_DIR/collector.log" >&2
      return 1
    fi
    sleep 0.1
  done
  GRPC=$(grep -o 'grpc_addr=[^ ]*' <<<"$line" | cut -d= -f2)
  HTTP=$(grep -o 'http_addr=[^ ]*' <<<"$line" | cut -d= -f2)
  if [[ -z $GRPC || -z $HTTP ]]; then
    echo "collector did not report its addresses:" >&2
    cat "$COLLECTOR_DIR/collector.log" >&2
    return 1
  fi
}

# start_victoria NAME: Debian's victoria-metrics on a free loopback port.
# Sets VM_DIR, VM_PID, VM_ADDR. Returns 1 if it is not installed.
start_victoria() {
  command -v victoria-metrics >/dev/null || return 1
  VM_DIR=$BENCH_DIR/$1
  mkdir -p "$VM_DIR"
  VM_ADDR=127.0.0.1:$(free_port)
  bench_spawn "$VM_DIR/vm.log" victoria-metrics -storageDataPath "$VM_DIR/data" \
    -httpListenAddr "$VM_ADDR" -retentionPeriod 10y -loggerLevel ERROR
  VM_PID=$LAST_PID
  local i
  for ((i = 0; i < 300; i++)); do
    curl -fsS "http://$VM_ADDR/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "victoria-metrics did not come up:" >&2
  cat "$VM_DIR/vm.log" >&2
  return 1
}

# Runs steward-loadgen ARGS... --kv; stores the report in file $REPORT.
# Prints errors to stderr; fails when the loadgen fails.
REPORT=
loadgen() {
  REPORT=$(mktemp "$BENCH_DIR/report.XXXXXX")
  "$BIN/steward-loadgen" "$@" --kv >"$REPORT"
}

# kv KEY [DEFAULT]: a value from the last loadgen report.
kv() {
  local value
  value=$(awk -F= -v key="$1" '$1 == key {print substr($0, length(key) + 2)}' "$REPORT")
  echo "${value:-${2:--}}"
}

# CPU ticks (user + system) of PID; USER_HZ is 100.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_s() { date +%s.%N; }
# percent TICKS SECONDS: CPU% of one core.
percent() { awk -v t="$1" -v s="$2" 'BEGIN {printf "%.0f", (s > 0 ? t / s : 0)}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
# fmt1 NUMBER: one decimal, or "-" for missing.
fmt1() { [[ $1 == - || -z $1 ]] && echo - || awk -v v="$1" 'BEGIN {printf "%.1f", v}'; }
# fmt0 NUMBER with thousands separators.
fmt0() {
  [[ $1 == - || -z $1 ]] && { echo -; return; }
  awk -v v="$1" 'BEGIN {s = sprintf("%.0f", v); r = ""; while (length(s) > 3) {r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3)} print s r}'
}
# median of the arguments (numbers).
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : "-"}'; }
# http_times N URL: GETs URL N times with the collector's API token (from
# $COLLECTOR_DIR/api-token); prints "MEDIAN_MS MAX_MS BYTES" (curl's total
# time; bytes of the last answer, which is kept in $BENCH_DIR/answer.json).
http_times() {
  local n=$1 url=$2 token times=() i
  token=$(tail -1 "$COLLECTOR_DIR/api-token")
  for ((i = 0; i < n; i++)); do
    times+=("$(curl -fsS -o "$BENCH_DIR/answer.json" -w '%{time_total}' -H "Authorization: Bearer $token" "$url")")
  done
  awk -v s="$(median "${times[@]}")" -v m="$(printf '%s\n' "${times[@]}" | sort -g | tail -1)" \
    -v b="$(stat -c %s "$BENCH_DIR/answer.json")" 'BEGIN {printf "%.1f %.1f %d\n", s * 1000, m * 1000, b}'
}

# Bytes of every file under DIR.
dir_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

machine_line() {
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, load $(cut -d' ' -f1-3 /proc/loadavg);" \
    "$(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); profile $PROFILE"
}
