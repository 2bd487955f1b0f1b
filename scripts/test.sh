#!/usr/bin/env bash
# The README's second command: start the local S3 servers (installing Garage
# and Ceph once if needed) and run the whole test suite against them, once
# with each destination: Garage, then Ceph RGW (the store Hetzner runs).
#
#   scripts/test.sh                      both destinations
#   FERRY_DESTINATIONS=ceph scripts/test.sh   one of them (garage or ceph)
#   scripts/test.sh --test copy          extra args go to `cargo test`
#
# Unit tests do not touch a store, so they run in the first round only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# promtool checks the alert rules in deploy/ (tests/deploy.rs).
if ! command -v promtool >/dev/null; then
  echo "== installing promtool (Debian's prometheus package)" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends prometheus >&2 || {
    $sudo apt-get update >&2
    $sudo apt-get install -y --no-install-recommends prometheus >&2
  }
fi
destinations=${FERRY_DESTINATIONS:-garage ceph}
first=1
for destination in $destinations; do
  export FERRY_DESTINATION=$destination
  eval "$(scripts/s3-local.sh up)"
  started=$SECONDS
  echo "== the test suite against the $destination destination ($FERRY_DEST_ENDPOINT)" >&2
  if [ $# -gt 0 ]; then
    cargo test "$@"
  elif [ -n "$first" ]; then
    cargo test --workspace --all-targets
  else
    cargo test --test '*'
  fi
  echo "== $destination: $((SECONDS - started)) s" >&2
  first=""
  unset FERRY_DEST_ENDPOINT FERRY_DEST_ACCESS_KEY_ID FERRY_DEST_SECRET_ACCESS_KEY
done
