#!/usr/bin/env bash
# nginx, which `npm start -- --cluster` puts in front of the calculators (gRPC and HTTP) and the
# totals services: the machine's when it can proxy gRPC, else Debian's package (with its TLS
# library) unpacked into .data/tools/ without root (see lib/debian-tool.sh). The launcher runs this
# script itself, so a fresh clone needs nothing installed beforehand.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

# The launcher's config needs HTTP/2 (gRPC is HTTP/2) and grpc_pass; both are in Debian's build,
# but an nginx built elsewhere may lack them.
proxies_grpc() {
  local built
  built="$("$1" -V 2>&1)" || return 1
  [[ "$built" == *--with-http_v2_module* && "$built" != *--without-http_grpc_module* ]]
}
command="$project_bin/nginx"
proxies_grpc "$command" && exit 0
if found="$(command -v nginx)" && proxies_grpc "$found"; then exit 0; fi

if DEBIAN_DEPENDS='libssl[0-9.]*' debian_unpack nginx nginx; then
  debian_command nginx usr/sbin/nginx
  if proxies_grpc "$command"; then
    echo "nginx: unpacked $(grep '^nginx=' "$debian_dir/nginx/packages.txt") into $debian_dir/nginx" >&2
    exit 0
  fi
  debian_cannot "the unpacked nginx does not run or cannot proxy gRPC: $("$command" -V 2>&1 | tail -n 1)"
fi
rm -f "$command"
machine_tool nginx proxies_grpc && exit 0
echo "nginx cannot be had: ${debian_failure:-the package was not unpacked}, and there is no nginx with HTTP/2 and gRPC proxying on PATH" >&2
exit 1
