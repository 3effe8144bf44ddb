#!/usr/bin/env bash
# docker-compose, to validate deploy/compose/docker-compose.yml offline (no Docker engine needed):
# Debian's package and the Python packages it depends on, unpacked into .data/tools/ without root
# (see lib/debian-tool.sh), run by the machine's python3.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

runs() { "$1" version >/dev/null 2>&1; }
command="$project_bin/docker-compose"
runs "$command" && exit 0

# Debian's docker-compose runs under /usr/bin/python3, which its Python dependencies are built for.
python=/usr/bin/python3
if [[ ! -x "$python" ]]; then
  debian_cannot "there is no $python to run Debian's docker-compose with"
elif DEBIAN_DEPENDS='python3-.*' debian_unpack docker-compose docker-compose; then
  mkdir -p "$project_bin"
  cat >"$command" <<LAUNCHER
#!/bin/sh
# Debian's docker-compose, unpacked by tools/setup/21-docker-compose.sh with its Python packages.
unpacked="\$(cd "\$(dirname "\$0")/../debian/docker-compose" && pwd)"
PYTHONPATH="\$unpacked/usr/lib/python3/dist-packages\$(for dir in "\$unpacked"/usr/lib/python3.*; do printf ':%s' "\$dir"; done)" \\
  exec $python -s "\$unpacked/usr/bin/docker-compose" "\$@"
LAUNCHER
  chmod +x "$command"
  if runs "$command"; then
    echo "docker-compose: unpacked $(grep '^docker-compose=' "$debian_dir/docker-compose/packages.txt") into $debian_dir/docker-compose" >&2
    exit 0
  fi
  debian_cannot "the unpacked docker-compose does not run: $("$command" version 2>&1 | tail -n 1)"
fi
rm -f "$command"
machine_tool docker-compose runs && exit 0
echo "docker-compose cannot be had: ${debian_failure:-the package was not unpacked}, and there is no usable docker-compose on PATH" >&2
exit 1
