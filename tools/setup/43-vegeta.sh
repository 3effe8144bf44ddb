#!/usr/bin/env bash
# The vegeta HTTP load generator (pinned), for the benchmark's HTTP pair (tools/bench/http-phase.ts):
# a light compiled one, so that its own CPU takes little from the servers it measures.
set -euo pipefail
VEGETA_VERSION="v12.13.0"
exec bash "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh" vegeta github.com/tsenart/vegeta/v12 "$VEGETA_VERSION"
