#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: ./fuzz/run.sh [seconds-per-target] [target...]
#
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked).
# Each target starts from its kept seeds in fuzz/corpus/<target>/ (read only)
# plus what earlier runs found in fuzz/target/corpus/<target>/ (scratch, not
# committed). A crash stops that target and lands in fuzz/artifacts/<target>/;
# reproduce it with `cargo +nightly fuzz run <target> <file>` from the
# repository root. Exits non-zero if any target crashed.
#
# SANITIZER=address for ASan (slower to build and run; our crates forbid
# unsafe code, so the default is none). Debug assertions are on, so integer
# overflow counts as a crash.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
sanitizer="${SANITIZER:-none}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -s "$sanitizer" --debug-assertions || exit 1

failed=()
for target in "${targets[@]}"; do
  scratch="fuzz/target/corpus/$target"
  mkdir -p "$scratch" "fuzz/artifacts/$target"
  echo "== $target: ${seconds}s"
  # libFuzzer adds new inputs to the first corpus directory only, so the
  # kept seeds stay as committed.
  if ! cargo +nightly fuzz run -s "$sanitizer" --debug-assertions "$target" \
    "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "Crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "No crashes in: ${targets[*]}"
