#!/usr/bin/env bash
# Prometheus, for the test that runs every dashboard query against live metrics, and for `npm run
# dashboards`: Debian's package, unpacked into .data/tools/ without root (see lib/debian-tool.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

runs() { "$1" --version >/dev/null 2>&1; }
command="$project_bin/prometheus"
runs "$command" && exit 0

if debian_unpack prometheus prometheus; then
  mkdir -p "$project_bin"
  ln -sfn ../debian/prometheus/usr/bin/prometheus "$command"
  if runs "$command"; then
    echo "prometheus: unpacked $(grep '^prometheus=' "$debian_dir/prometheus/packages.txt") into $debian_dir/prometheus" >&2
    exit 0
  fi
  debian_cannot "the unpacked prometheus does not run"
fi
rm -f "$command"
machine_tool prometheus runs && exit 0
echo "prometheus cannot be had: ${debian_failure:-the package was not unpacked}, and there is no usable prometheus on PATH" >&2
exit 1
