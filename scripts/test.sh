#!/usr/bin/env bash
# The README's second command: start the local S3 servers (installing Garage
# and Ceph once if needed) and run the whole test suite against them, once
# with each destination: Garage, then Ceph RGW (the store Hetzner runs).
#
#   scripts/test.sh                      both destinations
#   FERRY_DESTINATIONS=ceph scripts/test.sh   one of them (garage or ceph)
#   scripts/test.sh --test copy          extra args go to `cargo test`
#   FERRY_TORTURE_LONG=8h scripts/test.sh --test torture
#                                        the torture harness's long mode
#                                        (the whole suite runs its CI seeds)
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
# tests/deploy.rs: systemd-analyze checks deploy/ferry.service, setpriv runs
# ferry as an unprivileged user the way the unit does, strace lists the system
# calls ferry makes against the unit's filter, python-hcl2 reads
# deploy/ferry.nomad.hcl.
for tool in systemd-analyze:systemd setpriv:util-linux strace:strace; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    echo "== installing ${tool%%:*} (Debian's ${tool#*:} package)" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends "${tool#*:}" >&2 || {
      $sudo apt-get update >&2
      $sudo apt-get install -y --no-install-recommends "${tool#*:}" >&2
    }
  fi
done
# tests/daemon.rs opens the status page in a real headless browser.
if ! command -v chromium >/dev/null; then
  echo "== installing chromium (Debian's package)" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends chromium >&2 || {
    $sudo apt-get update >&2
    $sudo apt-get install -y --no-install-recommends chromium >&2
  }
fi
if ! python3 -c 'import hcl2' 2>/dev/null; then
  echo "== installing python-hcl2 (PyPI)" >&2
  python3 -m pip install --quiet 'python-hcl2==8.1.4' >&2
fi
destinations=${FERRY_DESTINATIONS:-garage ceph}
first=1
for destination in $destinations; do
  export FERRY_DESTINATION=$destination
  # Started on a line of its own, so that a failure stops here with the
  # script's own message; once more before giving up, as a server that
  # fails to start on a busy machine usually starts the second time.
  if ! env_lines=$(scripts/s3-local.sh up); then
    echo "== the local servers did not start; trying once more" >&2
    scripts/s3-local.sh down || true
    env_lines=$(scripts/s3-local.sh up)
  fi
  eval "$env_lines"
  started=$SECONDS
  echo "== the test suite against the $destination destination ($FERRY_DEST_ENDPOINT)" >&2
  rc=0
  # Some test files run once, against Ceph RGW (the store Hetzner runs),
  # when both destinations are tested: twice would not fit CI's 90 minutes
  # beside everything else. The torture harness; and the archive restores
  # and the event feed, whose source is moto (the destination adds nothing
  # the other files do not test). `FERRY_DESTINATIONS=garage` alone runs them.
  once="torture restore events"
  targets=(--test '*')
  if [ "$destination" = garage ] && [[ " $destinations " == *" ceph "* ]]; then
    targets=()
    for file in tests/*.rs; do
      name=$(basename "$file" .rs)
      [[ " $once " == *" $name "* ]] || targets+=(--test "$name")
    done
  fi
  if [ $# -gt 0 ]; then
    cargo test "$@" || rc=$?
  elif [ -n "$first" ]; then
    cargo test --workspace --lib --bins --benches "${targets[@]}" || rc=$?
  else
    cargo test "${targets[@]}" || rc=$?
  fi
  # A local server lost mid-run is named, with its log, not left to guess at.
  state=${FERRY_S3_STATE:-.s3-local}
  if [ -s "$state/restarts.log" ]; then
    echo "== local servers that stopped answering during the run (restarted):" >&2
    cat "$state/restarts.log" >&2
    mv "$state/restarts.log" "$state/restarts.$(date +%s).log"
  fi
  if [ "$rc" -ne 0 ]; then
    for log in "$state"/source/garage.log "$state"/destination/garage.log; do
      echo "== last lines of $log" >&2
      tail -n 40 "$log" >&2 || true
    done
    exit "$rc"
  fi
  echo "== $destination: $((SECONDS - started)) s" >&2
  first=""
  unset FERRY_DEST_ENDPOINT FERRY_DEST_ACCESS_KEY_ID FERRY_DEST_SECRET_ACCESS_KEY
done
