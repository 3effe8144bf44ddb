#!/usr/bin/env bash
# The ghz gRPC load generator (pinned), for the benchmark's saturation figures: a Go binary that
# spends far less CPU per call than k6's JavaScript VUs, so it takes less from what it measures.
# v0.121.0 by tag: the module proxy's "latest" still answers v0.93.0 (2021).
set -euo pipefail
GHZ_VERSION="v0.121.0"
exec bash "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh" ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION"
