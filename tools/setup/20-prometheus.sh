#!/usr/bin/env bash
# Prometheus, for the test that runs every dashboard query against live metrics.
set -euo pipefail
command -v prometheus >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out the node exporter and its service units.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service where an init system runs; the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v prometheus >/dev/null
