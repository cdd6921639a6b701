#!/usr/bin/env bash
# Every benchmark in its seconds-long smoke mode, so none of them rots.
# Builds what it needs in the debug profile (what `cargo test --workspace`
# in .ci/run has built already) and fails if any script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p steward-loadgen -p steward-collector -p steward-agent
failed=()
for script in ingest agents agents-soak storage console agent-footprint alert-latency cluster; do
  echo "==> bench/$script.sh --smoke" >&2
  started=$(date +%s)
  if bench/"$script".sh --smoke --no-build; then
    echo "<== bench/$script.sh ok ($(($(date +%s) - started)) s)" >&2
  else
    echo "<== bench/$script.sh FAILED" >&2
    failed+=("$script")
  fi
done
# The criterion micro-benchmarks, each run once (criterion's test mode under
# `cargo test`): debug profile, so only the bench binary is compiled.
echo "==> cargo test --bench hot_paths (criterion, each benchmark once)" >&2
started=$(date +%s)
if cargo test -q -p steward-collector --bench hot_paths; then
  echo "<== hot_paths ok ($(($(date +%s) - started)) s)" >&2
else
  echo "<== hot_paths FAILED" >&2
  failed+=(hot_paths)
fi
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
