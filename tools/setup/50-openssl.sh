#!/usr/bin/env bash
# The TLS tests make a throwaway self-signed certificate with the openssl command line tool.
set -euo pipefail
if command -v openssl >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "openssl is missing: install it (e.g. apt-get install openssl)" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl
