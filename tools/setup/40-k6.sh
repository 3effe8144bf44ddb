#!/usr/bin/env bash
# The k6 load generator (pinned), for `npm run loadtest`, the benchmark and the smoke test.
set -euo pipefail
K6_VERSION="v1.8.1"
exec bash "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh" k6 go.k6.io/k6 "$K6_VERSION"
