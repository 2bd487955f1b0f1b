#!/usr/bin/env bash
# The benchmark: ferry, rclone and s3sync side by side on the two local Garage
# servers, plus the servers' own ceiling, and the ledger at 10M keys.
#
#   scripts/bench.sh                 every data set, 3 runs each (about an hour)
#   scripts/bench.sh --smoke         tiny data, one run: what CI runs
#   scripts/bench.sh --sets small --runs 5 --tools ferry,rclone
#   scripts/bench.sh --sets mix --wan-rtt-ms 20   the source behind a simulated WAN link
#   scripts/bench.sh --events        only the event feed's lag (about 2 minutes): a `ferry run`
#                                    daemon follows an SQS queue while 100 objects a second are
#                                    PUT for 30 s; p50/p95/max from PUT to verified copy, and the
#                                    requests it saves against 15-minute passes
#   scripts/bench.sh --events --events-source garage   the same with Garage as the source and the
#                                    bench sending S3's events to moto's SQS (moto alone tops out
#                                    near 100 objects a second on 2 cores)
#
# It installs what it needs: rclone (Debian package), s3sync (crates.io,
# cached next to Garage), and `time` for peak RSS. Tables go to stdout and,
# with --out FILE, to FILE as Markdown. --events needs neither peer: it runs
# moto (which scripts/s3-local.sh installs) on a port of its own,
# FERRY_BENCH_MOTO_PORT (9391), so its load does not slow tests that share
# the one on 9300.
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

events=0
for arg in "$@"; do [ "$arg" = "--events" ] && events=1; done
if [ $events -eq 1 ]; then
  cargo build --release --workspace --bins >&2
  env_lines=$(scripts/s3-local.sh up)
  eval "$env_lines"
  [ -n "${FERRY_MOTO_ENDPOINT:-}" ] || { log "--events needs moto: run without FERRY_MOTO=0"; exit 1; }
  moto_server=$(ls -d "$TOOLS"/moto-*/bin/moto_server 2> /dev/null | sort -V | tail -n 1 || true)
  if [ -n "$moto_server" ]; then
    port=${FERRY_BENCH_MOTO_PORT:-9391}
    log "a moto of the bench's own on 127.0.0.1:$port"
    "$moto_server" -H 127.0.0.1 -p "$port" > /dev/null 2>&1 < /dev/null &
    moto_pid=$!
    trap 'kill "$moto_pid" 2> /dev/null || true' EXIT
    for _ in $(seq 1 100); do
      curl -s -o /dev/null "http://127.0.0.1:$port/" && break
      kill -0 "$moto_pid" 2> /dev/null || { log "moto did not start on port $port"; exit 1; }
      sleep 0.2
    done
    export FERRY_MOTO_ENDPOINT=http://127.0.0.1:$port
  else
    log "no moto_server under $TOOLS: using the shared moto at $FERRY_MOTO_ENDPOINT"
  fi
  target/release/ferry-bench "$@"
  exit
fi

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
