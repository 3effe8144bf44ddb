#!/usr/bin/env bash
# The openssl command line tool, with which the TLS tests make a throwaway self-signed certificate:
# the machine's, else Debian's package (with its library) unpacked into .data/tools/ without root
# (see lib/debian-tool.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

runs() { "$1" version >/dev/null 2>&1; }
command="$project_bin/openssl"
runs "$command" && exit 0
# Any openssl does, so the machine's comes first.
if found="$(command -v openssl)" && runs "$found"; then exit 0; fi

if DEBIAN_DEPENDS='libssl[0-9.]*' debian_unpack openssl openssl; then
  debian_command openssl usr/bin/openssl 'OPENSSL_CONF="$unpacked/etc/ssl/openssl.cnf"'
  if runs "$command"; then
    echo "openssl: unpacked $(grep '^openssl=' "$debian_dir/openssl/packages.txt") into $debian_dir/openssl" >&2
    exit 0
  fi
  debian_cannot "the unpacked openssl does not run: $("$command" version 2>&1 | tail -n 1)"
fi
rm -f "$command"
machine_tool openssl runs && exit 0
echo "openssl cannot be had: ${debian_failure:-the package was not unpacked}, and there is no usable openssl on PATH" >&2
exit 1
