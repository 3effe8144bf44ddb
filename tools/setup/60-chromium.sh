#!/usr/bin/env bash
# Chromium, in which the console's browser test (test/e2e/console.e2e.spec.ts) drives the page with
# playwright-core: the machine's when it runs headless, else Debian's package unpacked into
# .data/tools/ without root (see lib/debian-tool.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

runs_headless() {
  "$1" --headless --no-sandbox --version >/dev/null 2>&1
}
command="$project_bin/chromium"
runs_headless "$command" && exit 0

# Only the libraries a Debian machine with a desktop's usual ones (NSS, GTK, X) may lack: found by
# unpacking chromium alone and adding what `ldd` said was not found, until it ran and rendered.
libraries='chromium-common|libflac[0-9]+|libxnvctrl0|libdouble-conversion3|libharfbuzz-subset0|libminizip1|libopenh264-[0-9]+'
libraries+='|libopenjp2-7|libopus0|libpulse0|libsndfile1|libasyncns0|libogg0|libvorbis0a|libvorbisenc2|libmp3lame0|libmpg123-0'
if DEBIAN_DEPENDS="$libraries" debian_unpack chromium chromium; then
  # libpulse finds its private library by a RUNPATH into /usr; the launcher looks only in the
  # unpacked lib folder.
  for private in "$debian_dir"/chromium/usr/lib/*-linux-gnu/pulseaudio/*.so; do
    [[ -e "$private" ]] && ln -sf "pulseaudio/$(basename "$private")" "$(dirname "$(dirname "$private")")/"
  done
  debian_command chromium usr/lib/chromium/chromium
  if runs_headless "$command"; then
    echo "chromium: unpacked $(grep '^chromium=' "$debian_dir/chromium/packages.txt") into $debian_dir/chromium" >&2
    exit 0
  fi
  debian_cannot "the unpacked chromium does not run: $("$command" --headless --no-sandbox --version 2>&1 | tail -n 1)"
fi
rm -f "$command"
machine_tool chromium runs_headless && exit 0
echo "chromium cannot be had: ${debian_failure:-the package was not unpacked}, and there is no chromium on PATH that runs headless" >&2
exit 1
