#!/usr/bin/env bash
# Installs the k6 load generator (pinned) into the project-local tools dir, built from the Go module proxy.
# Load tests (`npm run loadtest`), the benchmark and the CI smoke run use this exact binary.
set -euo pipefail

K6_VERSION="v1.8.1"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools_bin="${SUMMA_TOOLS_BIN:-$repo_root/.data/tools/bin}"
k6_bin="$tools_bin/k6"

if [[ -x "$k6_bin" ]] && "$k6_bin" version 2>/dev/null | grep -q "k6 ${K6_VERSION}"; then
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do
    [[ -x "$candidate/go" ]] && PATH="$candidate:$PATH"
  done
fi
if ! command -v go >/dev/null 2>&1; then
  echo "40-k6.sh: Go is required to build k6 ${K6_VERSION} (go install go.k6.io/k6@${K6_VERSION})" >&2
  exit 1
fi

mkdir -p "$tools_bin"
echo "40-k6.sh: building k6 ${K6_VERSION} into $tools_bin (first build takes a few minutes)" >&2
# Build into a temp dir and move into place so an interrupted build never leaves a broken binary behind.
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
GOBIN="$staging" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "go.k6.io/k6@${K6_VERSION}"
mv -f "$staging/k6" "$k6_bin"
"$k6_bin" version >&2
