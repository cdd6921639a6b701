#!/usr/bin/env bash
# Moved to bench/agent-footprint.sh (which adds the peers and a smoke mode).
# Usage kept: tests/soak/agent_footprint.sh [DURATION_SECONDS]
set -euo pipefail
exec "$(dirname "$0")/../../bench/agent-footprint.sh" --seconds "${1:-300}"
