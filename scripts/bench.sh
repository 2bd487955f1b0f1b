#!/usr/bin/env bash
# The benchmark: ferry, rclone and s3sync side by side on the two local Garage
# servers, plus the servers' own ceiling, and the ledger at 10M keys.
#
#   scripts/bench.sh                 every data set, 3 runs each (about an hour)
#   scripts/bench.sh --smoke         tiny data, one run: what CI runs
#   scripts/bench.sh --sets small --runs 5 --tools ferry,rclone
#   scripts/bench.sh --sets mix --wan-rtt-ms 20   the source behind a simulated WAN link
#
# It installs what it needs: rclone (Debian package), s3sync (crates.io,
# cached next to Garage), and `time` for peak RSS. Tables go to stdout and,
# with --out FILE, to FILE as Markdown.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

S3SYNC_VERSION=1.62.4
TOOLS=${FERRY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry/tools}
export PATH=$TOOLS/bin:$PATH
log() { echo "bench: $*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} from Debian"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y "${missing[@]}" >&2 || {
    $sudo apt-get update >&2
    $sudo apt-get install -y "${missing[@]}" >&2
  }
}

apt_install rclone time
if ! s3sync --version 2>/dev/null | grep -q "$S3SYNC_VERSION"; then
  log "building s3sync $S3SYNC_VERSION from crates.io into $TOOLS (about 11 minutes, once)"
  cargo install s3sync --locked --version "$S3SYNC_VERSION" --root "$TOOLS" >&2
fi

cargo build --release --workspace --bins >&2
# On a line of its own, so that a failure to start stops the script here.
env_lines=$(scripts/s3-local.sh up)
eval "$env_lines"
target/release/ferry-bench "$@"

smoke=0
for arg in "$@"; do [ "$arg" = "--smoke" ] && smoke=1; done
if [ $smoke -eq 1 ]; then
  target/release/ferry-ledger-bench --keys 200000
else
  target/release/ferry-ledger-bench --keys 10000000
fi
