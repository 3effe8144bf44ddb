# Sourced by the setup scripts of tools that come from Debian's packages. They are unpacked into the
# project's own folder, .data/tools/debian/NAME, with a command in .data/tools/bin: `apt-get
# download` and `dpkg-deb -x` need no root. When the machine's package lists do not know a package
# (apt-get update never ran), private lists are fetched into .data/tools/debian/apt, still without
# root. Where that cannot be done, the machine's own command on PATH is used; failing that, the
# script exits 1 and its last line says why. Nothing is installed on the machine itself.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
tools_dir="$repo_root/.data/tools"
project_bin="$tools_dir/bin"
debian_dir="$tools_dir/debian"
apt_opts=()
apt_log=""
# Why the last debian_unpack failed, for the script's closing line.
debian_failure=""

# Says why unpacking fails, and keeps it in $debian_failure.
debian_cannot() {
  debian_failure="$*"
  echo "$*" >&2
}

# Extra apt-get/apt-cache options to use private package lists, fetched now (no root needed).
use_private_package_lists() {
  local state="$debian_dir/apt"
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
  apt_opts=(-o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache")
  echo "fetching Debian's package lists into $state" >&2
  apt-get "${apt_opts[@]}" update >"$apt_log" 2>&1
}

# The packages to unpack: each one named, plus those of their dependencies (recursively) whose names
# match the extended regular expression $DEBIAN_DEPENDS (none when it is empty).
debian_package_set() {
  if [[ -z "${DEBIAN_DEPENDS:-}" ]]; then
    printf '%s\n' "$@"
    return
  fi
  local named
  named="$(printf '%s|' "$@")"
  apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances --no-pre-depends "$@" 2>>"$apt_log" |
    grep -E "^(${named%|}|$DEBIAN_DEPENDS)\$" | sort -u
}

# debian_unpack NAME PACKAGE...: unpacks the packages (see debian_package_set) into
# $debian_dir/NAME, replacing what was there; $debian_dir/NAME/packages.txt lists their versions.
# Returns 1 with the reason on stderr when it cannot.
debian_unpack() {
  local name="$1"
  shift
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    debian_cannot "there is no apt-get and dpkg-deb to fetch Debian's packages with"
    return 1
  fi
  mkdir -p "$debian_dir"
  local staging
  staging="$(mktemp -d "$debian_dir/.$name.XXXXXX")"
  apt_log="$staging/apt.log"
  # Returns its status rather than failing the caller: set -e does not apply inside a function
  # called in an `if`, so each step checks its own.
  if ! _debian_unpack_into "$staging" "$@"; then
    [[ -s "$apt_log" ]] && tail -n 5 "$apt_log" >&2
    rm -rf "$staging"
    return 1
  fi
  rm -rf "${debian_dir:?}/$name"
  mv "$staging/root" "$debian_dir/$name"
  rm -rf "$staging"
}

_debian_unpack_into() {
  local staging="$1"
  shift
  apt_opts=()
  # The machine's lists first; private ones when they do not know the package.
  if ! apt-cache show "$1" >/dev/null 2>&1; then
    use_private_package_lists || { debian_cannot "apt-get update failed (no network?)"; return 1; }
  fi
  local packages
  packages="$(debian_package_set "$@")" || { debian_cannot "cannot resolve the dependencies of $*"; return 1; }
  mkdir -p "$staging/debs" "$staging/root"
  # shellcheck disable=SC2086 # one package a word
  if ! (cd "$staging/debs" && apt-get "${apt_opts[@]}" download $packages >>"$apt_log" 2>&1); then
    # Stale machine lists name versions the archive no longer has: fetch current ones once.
    if [[ ${#apt_opts[@]} -eq 0 ]] && use_private_package_lists &&
      (cd "$staging/debs" && apt-get "${apt_opts[@]}" download $packages >>"$apt_log" 2>&1); then
      :
    else
      debian_cannot "apt-get download $* failed (no network?)"
      return 1
    fi
  fi
  local deb
  for deb in "$staging"/debs/*.deb; do
    dpkg-deb -x "$deb" "$staging/root" || { debian_cannot "dpkg-deb -x $(basename "$deb") failed"; return 1; }
    dpkg-deb -W --showformat='${Package}=${Version}\n' "$deb" >>"$staging/root/packages.txt"
  done
}

# machine_tool NAME CHECK: the machine's own NAME on PATH, if the function CHECK accepts it.
machine_tool() {
  local name="$1" check="$2" found
  if found="$(command -v "$name")" && "$check" "$found"; then
    echo "$name: using $found" >&2
    return 0
  fi
  return 1
}

# debian_command NAME PROGRAM [VAR=VALUE...]: writes $project_bin/NAME, a launcher for PROGRAM (a path
# inside $debian_dir/NAME) that finds the unpacked libraries, with the given extra environment; a
# VALUE may use $unpacked for that folder. exec keeps the pid the program's own.
debian_command() {
  local name="$1" program="$2"
  shift 2
  local extra_env=""
  local assignment
  for assignment in "$@"; do extra_env+="$assignment "; done
  mkdir -p "$project_bin"
  cat >"$project_bin/$name" <<LAUNCHER
#!/bin/sh
# Debian's $name, unpacked by tools/setup with its libraries.
unpacked="\$(cd "\$(dirname "\$0")/../debian/$name" && pwd)"
LD_LIBRARY_PATH="\$(for dir in "\$unpacked"/usr/lib/*-linux-gnu; do printf '%s:' "\$dir"; done)\${LD_LIBRARY_PATH:-}" \\
  ${extra_env}exec "\$unpacked/$program" "\$@"
LAUNCHER
  chmod +x "$project_bin/$name"
}
