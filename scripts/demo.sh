#!/usr/bin/env bash
# The README's first command: start two local S3 servers, fill the source with
# the audiobook platform's shapes, copy everything with ferry, show the
# ledger's status, and prove that every copy is byte-equal.
#
#   scripts/demo.sh          a fresh demo (server data and ledger reset)
#   scripts/demo.sh --keep   keep what is there: shows that a second run copies nothing
#   scripts/demo.sh --events then the events mode (about 30 s more): moto plays AWS's
#                            S3 and SQS (config/ferry-events.toml); a `ferry run` daemon
#                            follows the bucket's event notifications and copies each
#                            write within a second, `ferry status` shows the feed's lag,
#                            and `ferry cutover` drains, lists, reconciles and signs off.
#                            Combines with --keep.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=0
events=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --events) events=1 ;;
    *)
      echo "usage: $0 [--keep] [--events]" >&2
      exit 2
      ;;
  esac
done

if [ $keep -eq 0 ]; then
  scripts/s3-local.sh reset
  rm -rf state
fi
# On a line of its own, so that a failure to start stops the script here.
env_lines=$(scripts/s3-local.sh up)
eval "$env_lines"

echo "== building ferry (release)"
cargo build --release --quiet --workspace --bins

FERRY=target/release/ferry
# The config names env vars, not keys; still, ferry warns about a config others can read.
chmod 600 config/ferry.toml
CONFIG=config/ferry.toml
echo "== filling the source buckets"
target/release/ferry-demo --config "$CONFIG" fill --scale full

echo "== ferry run --once"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "ferry run --once: %e s wall, peak RSS %M KiB" "$FERRY" --config "$CONFIG" run --once
else
  "$FERRY" --config "$CONFIG" run --once
fi

echo "== ferry status"
"$FERRY" --config "$CONFIG" status --format markdown

echo "== comparing every object, source against destination"
target/release/ferry-demo --config "$CONFIG" compare

if [ $events -eq 1 ]; then
  echo "== events: S3 event notifications through SQS, followed by the daemon (moto plays AWS; config/ferry-events.toml)"
  if [ -z "${FERRY_MOTO_ENDPOINT:-}" ]; then
    echo "demo: --events needs moto, which scripts/s3-local.sh starts unless FERRY_MOTO=0" >&2
    exit 1
  fi
  chmod 600 config/ferry-events.toml
  target/release/ferry-bench --events-demo --events-config config/ferry-events.toml
fi
