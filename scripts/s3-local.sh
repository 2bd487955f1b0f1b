#!/usr/bin/env bash
# Two local S3-compatible servers (Garage) on loopback: one plays the AWS
# source, the other the Hetzner destination. No Docker.
#
#   scripts/s3-local.sh up     install Garage if needed, start both, create keys and the demo buckets
#   scripts/s3-local.sh env    print the export lines that the demo and the tests use
#   scripts/s3-local.sh down   stop both
#
# `eval "$(scripts/s3-local.sh up)"` starts them and sets the env in one go.
# Running `up` twice is harmless. State lives in .s3-local/ (git-ignored);
# the Garage binary is cached in $FERRY_TOOLS (default ~/.cache/ferry/tools).
set -euo pipefail

GARAGE_VERSION=2.5.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${FERRY_S3_STATE:-$ROOT/.s3-local}
TOOLS=${FERRY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry/tools}
GARAGE=$TOOLS/bin/garage
SOURCE_PORT=${FERRY_SOURCE_PORT:-9000}
DEST_PORT=${FERRY_DEST_PORT:-9100}

log() { echo "s3-local: $*" >&2; }

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

install_garage() {
  if [ -x "$GARAGE" ] && "$GARAGE" --version 2>/dev/null | grep -q "cargo:$GARAGE_VERSION"; then
    return
  fi
  log "building Garage $GARAGE_VERSION from crates.io into $TOOLS (about 12 minutes, once)"
  # SQLite metadata: LMDB fails on keys over ~500 bytes, and S3 allows 1,024.
  cargo install garage --locked --version "$GARAGE_VERSION" \
    --no-default-features --features bundled-libs,sqlite --root "$TOOLS" >&2
}

# instance NAME S3_PORT REGION
instance_up() {
  local name=$1 port=$2 region=$3
  local dir=$STATE/$name rpc=$(($2 + 1))
  mkdir -p "$dir/meta" "$dir/data"
  if [ ! -f "$dir/keys.env" ]; then
    umask 077
    hex 32 > "$dir/rpc_secret"
    {
      echo "KEY_ID=GK$(hex 12)"
      echo "SECRET=$(hex 32)"
    } > "$dir/keys.env"
    umask 022
  fi
  chmod 600 "$dir/rpc_secret" "$dir/keys.env"
  cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret_file = "$dir/rpc_secret"

[s3_api]
api_bind_addr = "127.0.0.1:$port"
s3_region = "$region"
root_domain = ".s3.localhost"
TOML
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    log "$name already running on 127.0.0.1:$port"
    return
  fi
  # shellcheck disable=SC1091
  . "$dir/keys.env"
  GARAGE_DEFAULT_ACCESS_KEY=$KEY_ID GARAGE_DEFAULT_SECRET_KEY=$SECRET GARAGE_DEFAULT_BUCKET=ferry-default \
    RUST_LOG=${GARAGE_LOG:-warn} \
    setsid "$GARAGE" -c "$dir/garage.toml" server --single-node --default-bucket \
    >> "$dir/garage.log" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  for _ in $(seq 1 100); do
    if "$GARAGE" -c "$dir/garage.toml" bucket info ferry-default > /dev/null 2>&1; then
      log "$name up on http://127.0.0.1:$port (log: $dir/garage.log)"
      return
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { log "$name failed to start:"; tail -20 "$dir/garage.log" >&2; exit 1; }
    sleep 0.2
  done
  log "$name did not become ready in 20 s; see $dir/garage.log"
  exit 1
}

# buckets NAME BUCKET...
buckets() {
  local name=$1 dir=$STATE/$1
  shift
  # shellcheck disable=SC1091
  . "$dir/keys.env"
  for b in "$@"; do
    "$GARAGE" -c "$dir/garage.toml" bucket info "$b" > /dev/null 2>&1 \
      || "$GARAGE" -c "$dir/garage.toml" bucket create "$b" > /dev/null
    "$GARAGE" -c "$dir/garage.toml" bucket allow --read --write --owner "$b" --key "$KEY_ID" > /dev/null
  done
}

print_env() {
  local s=$STATE/source/keys.env d=$STATE/destination/keys.env
  [ -f "$s" ] && [ -f "$d" ] || { log "not set up yet: run scripts/s3-local.sh up"; exit 1; }
  echo "export FERRY_SOURCE_ENDPOINT=http://127.0.0.1:$SOURCE_PORT"
  echo "export FERRY_SOURCE_ACCESS_KEY_ID=$(. "$s"; echo "$KEY_ID")"
  echo "export FERRY_SOURCE_SECRET_ACCESS_KEY=$(. "$s"; echo "$SECRET")"
  echo "export FERRY_DEST_ENDPOINT=http://127.0.0.1:$DEST_PORT"
  echo "export FERRY_DEST_ACCESS_KEY_ID=$(. "$d"; echo "$KEY_ID")"
  echo "export FERRY_DEST_SECRET_ACCESS_KEY=$(. "$d"; echo "$SECRET")"
}

instance_down() {
  local dir=$STATE/$1
  if [ -f "$dir/pid" ]; then
    local pid
    pid=$(cat "$dir/pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      log "$1 stopped"
    fi
    rm -f "$dir/pid"
  fi
}

case "${1:-}" in
  up)
    install_garage
    instance_up source "$SOURCE_PORT" eu-central-1
    instance_up destination "$DEST_PORT" fsn1
    buckets source audio mediafiles onix packages
    buckets destination hub-audio hub-mediafiles hub-onix hub-packages
    print_env
    ;;
  env) print_env ;;
  down)
    instance_down source
    instance_down destination
    ;;
  reset)
    "$0" down
    rm -rf "$STATE"
    log "state removed"
    ;;
  *)
    echo "usage: $0 up|env|down|reset" >&2
    exit 2
    ;;
esac
