#!/usr/bin/env bash
# grpcurl (pinned), for the test that calls the calculator the way the README shows.
set -euo pipefail
GRPCURL_VERSION="v1.9.3"
exec bash "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh" grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"
