#!/usr/bin/env bash
# docker-compose, to validate deploy/compose/docker-compose.yml offline (no Docker engine needed).
set -euo pipefail
command -v docker-compose >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
command -v docker-compose >/dev/null
