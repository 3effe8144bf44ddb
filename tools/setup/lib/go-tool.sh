#!/usr/bin/env bash
# Builds a pinned Go command from the Go module proxy into the project-local tools dir, unless that
# exact version is already there (NAME.version beside the binary says which it is).
# Usage: go-tool.sh NAME MODULE_PATH VERSION
set -euo pipefail

name="$1" module="$2" version="$3"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
tools_bin="${SUMMA_TOOLS_BIN:-$repo_root/.data/tools/bin}"
binary="$tools_bin/$name"

if [[ -x "$binary" && "$(cat "$binary.version" 2>/dev/null)" == "$module@$version" ]]; then
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do
    [[ -x "$candidate/go" ]] && PATH="$candidate:$PATH"
  done
fi
if ! command -v go >/dev/null 2>&1; then
  echo "$name cannot be built: there is no Go (on PATH, in /usr/local/go/bin or /usr/lib/go/bin) to build $name $version with (go install $module@$version)" >&2
  exit 1
fi

mkdir -p "$tools_bin"
echo "$name: building $name $version into $tools_bin (the first build takes a few minutes)" >&2
# Built into a temporary dir and moved into place, so an interrupted build never leaves a broken binary.
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
if ! GOBIN="$staging" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$module@$version"; then
  echo "$name cannot be built: go install $module@$version failed (no network, or no Go module proxy?)" >&2
  exit 1
fi
mv -f "$staging/$name" "$binary"
echo "$module@$version" >"$binary.version"
echo "$name: installed $module@$version" >&2
