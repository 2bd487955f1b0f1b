#!/usr/bin/env bash
# Local S3-compatible servers on loopback, no Docker, no systemd:
#   - Garage on :9000 plays the AWS source;
#   - Garage on :9100 and a single-node Ceph RGW on :9200 (one mon, one
#     BlueStore OSD on a sparse file, one radosgw) play the Hetzner destination.
#     Hetzner runs Ceph, so Ceph is the destination that counts; Garage is
#     the second opinion;
#   - moto on :9300 plays AWS for what only AWS does (archive restores:
#     tests/restore.rs). It keeps everything in memory.
#
#   scripts/s3-local.sh up     install what is missing, start them all, create keys and the demo buckets
#   scripts/s3-local.sh env    print the export lines that the demo and the tests use
#   scripts/s3-local.sh down   stop them all
#   scripts/s3-local.sh reset  stop them and remove their state
#
# FERRY_DESTINATION=ceph|garage (default garage) picks the destination whose
# endpoint and keys `up` and `env` print. FERRY_CEPH=0 skips Ceph altogether.
# `eval "$(scripts/s3-local.sh up)"` starts them and sets the env in one go.
# Running `up` twice is harmless. State lives in .s3-local/ (git-ignored);
# the Garage binary is cached in $FERRY_TOOLS (default ~/.cache/ferry/tools);
# Ceph 16.2 comes from Debian's packages; moto from PyPI into a venv in
# $FERRY_TOOLS/moto. FERRY_MOTO=0 skips moto.
set -Eeuo pipefail

GARAGE_VERSION=2.5.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${FERRY_S3_STATE:-$ROOT/.s3-local}
TOOLS=${FERRY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry/tools}
GARAGE=$TOOLS/bin/garage
SOURCE_PORT=${FERRY_SOURCE_PORT:-9000}
DEST_PORT=${FERRY_DEST_PORT:-9100}
CEPH_PORT=${FERRY_CEPH_PORT:-9200}
MOTO_PORT=${FERRY_MOTO_PORT:-9300}
# Pinned: the tests lean on its state manager and its restore headers.
MOTO_VERSION=5.2.5
MOTO_VENV=$TOOLS/moto-$MOTO_VERSION
DESTINATION=${FERRY_DESTINATION:-garage}
case "$DESTINATION" in garage | ceph) ;; *)
  echo "s3-local: FERRY_DESTINATION=$DESTINATION: use garage or ceph" >&2
  exit 2
  ;;
esac

log() { echo "s3-local: $*" >&2; }

# A step that fails says which one, with the logs that tell why: Ceph's setup
# steps write to their logs, not to the terminal, and `eval "$(... up)"`
# would otherwise hide the failure.
failed() {
  log "failed (exit $1) at line $2: $3"
  for f in "$STATE"/ceph/log/setup.log "$STATE"/ceph/log/mon.a.log "$STATE"/ceph/log/osd.0.log \
    "$STATE"/source/garage.log "$STATE"/destination/garage.log; do
    [ -s "$f" ] || continue
    log "last lines of $f:"
    tail -n 15 "$f" >&2
  done
}
trap 'failed $? $LINENO "$BASH_COMMAND"' ERR

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Whether something accepts connections on 127.0.0.1:PORT.
answers() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

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
    local pid
    pid=$(cat "$dir/pid")
    # A live pid is not enough: the pid may be another process's now, or a
    # Garage that stopped serving. Its port must answer.
    if grep -q garage "/proc/$pid/cmdline" 2>/dev/null && answers "$port"; then
      log "$name already running on 127.0.0.1:$port"
      return
    fi
    if grep -q garage "/proc/$pid/cmdline" 2>/dev/null; then
      log "$name (pid $pid) does not answer on 127.0.0.1:$port: stopping it and starting it again"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
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

install_ceph() {
  if command -v ceph-mon > /dev/null && command -v ceph-osd > /dev/null && command -v radosgw > /dev/null; then
    return
  fi
  log "installing Ceph (ceph-mon ceph-osd radosgw) from Debian's packages (about 1 minute, once)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    ceph-mon ceph-osd radosgw curl >&2
}

# S3 calls to Ceph for the few things the script does itself (create a bucket).
ceph_s3() {
  local method=$1 path=$2
  # shellcheck disable=SC1091
  . "$STATE/ceph/keys.env"
  curl -sS -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:fsn1:s3" --user "$KEY_ID:$SECRET" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X "$method" "http://127.0.0.1:$CEPH_PORT/$path"
}

ceph_running() {
  local dir=$STATE/ceph
  for d in mon.a osd.0 client.rgw.ferry; do
    [ -f "$dir/run/$d.pid" ] && kill -0 "$(cat "$dir/run/$d.pid")" 2> /dev/null || return 1
  done
}

# One mon, one OSD and one radosgw, started by hand: no systemd, no Docker,
# no cephx. The comments in the config keep the reasons that are not obvious.
ceph_up() {
  local dir=$STATE/ceph mon1=$((CEPH_PORT + 10)) mon2=$((CEPH_PORT + 11))
  local started=$SECONDS
  mkdir -p "$dir/mon" "$dir/osd" "$dir/run" "$dir/log"
  if ceph_running; then
    log "ceph already running on 127.0.0.1:$CEPH_PORT"
    return
  fi
  ceph_down
  [ -f "$dir/fsid" ] || cat /proc/sys/kernel/random/uuid > "$dir/fsid"
  cat > "$dir/ceph.conf" << CONF
[global]
fsid = $(cat "$dir/fsid")
mon host = v2:127.0.0.1:$mon2,v1:127.0.0.1:$mon1
mon initial members = a
# Auth off, and on the wire too: with "none" alone the messenger still asks
# for secure mode and radosgw fails with get_initial_auth_request -13.
auth cluster required = none
auth service required = none
auth client required = none
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
keyring = $dir/keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
# One OSD holds every copy.
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
# BlueStore on a sparse file outside the OSD's folder (mkfs links "block"
# inside it); a small fixed cache keeps the OSD to a few hundred MB.
osd objectstore = bluestore
bluestore block path = $dir/osd-block
bluestore block create = true
bluestore block size = 21474836480
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 134217728
[client.rgw.ferry]
rgw frontends = beast endpoint=127.0.0.1:$CEPH_PORT
# SSE-C over plain HTTP on loopback.
rgw crypt require ssl = false
CONF
  local c=(-c "$dir/ceph.conf")
  if [ ! -f "$dir/keyring" ]; then
    # Keys are needed even with auth off.
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' > /dev/null
    ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' > /dev/null
    ceph-authtool "$dir/keyring" --gen-key -n client.rgw.ferry --cap mon 'allow rw' --cap osd 'allow rwx' > /dev/null
  fi
  if [ ! -f "$dir/mon/mon.a/ferry-ready" ]; then
    rm -rf "$dir/mon/mon.a"
    monmaptool --create --clobber --addv a "[v2:127.0.0.1:$mon2,v1:127.0.0.1:$mon1]" \
      --fsid "$(cat "$dir/fsid")" "$dir/monmap" > /dev/null
    ceph-mon "${c[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" 2>> "$dir/log/setup.log"
    touch "$dir/mon/mon.a/ferry-ready"
  fi
  ceph-mon "${c[@]}" -i a 2>> "$dir/log/setup.log"
  if [ ! -f "$dir/osd/osd.0/ferry-ready" ]; then
    rm -rf "$dir/osd/osd.0" "$dir/osd-block"
    mkdir -p "$dir/osd/osd.0"
    timeout 60 ceph "${c[@]}" osd create > /dev/null
    ceph-osd "${c[@]}" -i 0 --mkfs >> "$dir/log/setup.log" 2>&1
    touch "$dir/osd/osd.0/ferry-ready"
  fi
  ceph-osd "${c[@]}" -i 0 2>> "$dir/log/setup.log"
  # radosgw creates its pools on first start, which needs the OSD up.
  radosgw "${c[@]}" -n client.rgw.ferry 2>> "$dir/log/setup.log"
  local up=""
  for _ in $(seq 1 600); do
    if curl -s -o /dev/null "http://127.0.0.1:$CEPH_PORT/"; then
      up=1
      break
    fi
    sleep 0.1
  done
  if [ -z "$up" ]; then
    log "ceph's radosgw did not answer in 60 s; see $dir/log/"
    tail -20 "$dir/log/client.rgw.ferry.log" >&2 || true
    exit 1
  fi
  if [ ! -f "$dir/keys.env" ]; then
    local key secret
    key=$(hex 10 | tr a-f A-F)
    secret=$(hex 20)
    radosgw-admin "${c[@]}" user create --uid ferry --display-name ferry \
      --access-key "$key" --secret "$secret" > /dev/null 2>> "$dir/log/setup.log"
    umask 077
    printf 'KEY_ID=%s\nSECRET=%s\n' "$key" "$secret" > "$dir/keys.env"
    umask 022
  fi
  # Every test makes four buckets: RGW's default cap of 1,000 per user is
  # reached after a few rounds on one machine (TooManyBuckets). 0 = no cap.
  radosgw-admin "${c[@]}" user modify --uid ferry --max-buckets 0 > /dev/null 2>> "$dir/log/setup.log"
  log "ceph up on http://127.0.0.1:$CEPH_PORT in $((SECONDS - started)) s (logs: $dir/log/)"
}

ceph_buckets() {
  for b in "$@"; do
    local code
    code=$(ceph_s3 PUT "$b")
    case "$code" in 200 | 409) ;; *)
      log "ceph: creating bucket $b answered HTTP $code"
      exit 1
      ;;
    esac
  done
}

ceph_down() {
  local dir=$STATE/ceph stopped=""
  # The gateway first, the mon last: each needs the ones after it to stop cleanly.
  for d in client.rgw.ferry osd.0 mon.a; do
    local f=$dir/run/$d.pid
    [ -f "$f" ] || continue
    local pid
    pid=$(cat "$f")
    if kill "$pid" 2> /dev/null; then
      for _ in $(seq 1 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2> /dev/null || true
      stopped=1
    fi
    rm -f "$f"
  done
  [ -z "$stopped" ] || log "ceph stopped"
}

install_moto() {
  if [ -x "$MOTO_VENV/bin/moto_server" ]; then
    return
  fi
  log "installing moto[server]==$MOTO_VERSION from PyPI into $MOTO_VENV (about 1 minute, once)"
  rm -rf "$MOTO_VENV"
  # Debian's python3 makes venvs only with its python3-venv package.
  if ! python3 -c 'import ensurepip, venv' 2> /dev/null; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    log "installing python3-venv from Debian's packages (for moto's venv)"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-venv >&2 || {
      $sudo apt-get update -q >&2
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-venv >&2
    }
  fi
  python3 -m venv "$MOTO_VENV" >&2
  "$MOTO_VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" >&2
}

# moto answers any key pair; the env prints one (a secret of 32 characters
# or more, as tests/secrets.rs looks for every secret in what ferry writes).
moto_up() {
  local dir=$STATE/moto
  mkdir -p "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2> /dev/null \
    && grep -q moto "/proc/$(cat "$dir/pid")/cmdline" 2> /dev/null && answers "$MOTO_PORT"; then
    log "moto already running on 127.0.0.1:$MOTO_PORT"
    return
  fi
  setsid "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >> "$dir/moto.log" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  for _ in $(seq 1 150); do
    if answers "$MOTO_PORT"; then
      log "moto up on http://127.0.0.1:$MOTO_PORT (log: $dir/moto.log)"
      return
    fi
    kill -0 "$(cat "$dir/pid")" 2> /dev/null || { log "moto failed to start:"; tail -20 "$dir/moto.log" >&2; exit 1; }
    sleep 0.2
  done
  log "moto did not answer in 30 s; see $dir/moto.log"
  exit 1
}

moto_running() {
  [ -f "$STATE/moto/pid" ] && kill -0 "$(cat "$STATE/moto/pid")" 2> /dev/null
}

print_env() {
  local s=$STATE/source/keys.env d=$STATE/destination/keys.env port=$DEST_PORT
  if [ "$DESTINATION" = ceph ]; then
    d=$STATE/ceph/keys.env
    port=$CEPH_PORT
  fi
  [ -f "$s" ] && [ -f "$d" ] || { log "not set up yet: run scripts/s3-local.sh up"; exit 1; }
  echo "export FERRY_SOURCE_ENDPOINT=http://127.0.0.1:$SOURCE_PORT"
  echo "export FERRY_SOURCE_ACCESS_KEY_ID=$(. "$s"; echo "$KEY_ID")"
  echo "export FERRY_SOURCE_SECRET_ACCESS_KEY=$(. "$s"; echo "$SECRET")"
  echo "export FERRY_DESTINATION=$DESTINATION"
  echo "export FERRY_DEST_ENDPOINT=http://127.0.0.1:$port"
  echo "export FERRY_DEST_ACCESS_KEY_ID=$(. "$d"; echo "$KEY_ID")"
  echo "export FERRY_DEST_SECRET_ACCESS_KEY=$(. "$d"; echo "$SECRET")"
  # Ceph as such, whichever destination is picked: the tests also use it as
  # a source, one that cannot tell its part boundaries.
  local c=$STATE/ceph/keys.env
  if [ -f "$c" ] && ceph_running; then
    echo "export FERRY_CEPH_ENDPOINT=http://127.0.0.1:$CEPH_PORT"
    echo "export FERRY_CEPH_ACCESS_KEY_ID=$(. "$c"; echo "$KEY_ID")"
    echo "export FERRY_CEPH_SECRET_ACCESS_KEY=$(. "$c"; echo "$SECRET")"
  fi
  if moto_running; then
    echo "export FERRY_MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT"
    echo "export FERRY_MOTO_ACCESS_KEY_ID=moto-ferry"
    echo "export FERRY_MOTO_SECRET_ACCESS_KEY=moto-ferry-secret-0123456789abcdef0123456789abcdef"
  fi
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
    if [ "${FERRY_CEPH:-1}" != 0 ] || [ "$DESTINATION" = ceph ]; then
      install_ceph
      ceph_up
      ceph_buckets hub-audio hub-mediafiles hub-onix hub-packages
    fi
    if [ "${FERRY_MOTO:-1}" != 0 ]; then
      install_moto
      moto_up
    fi
    print_env
    ;;
  env) print_env ;;
  down)
    instance_down source
    instance_down destination
    ceph_down
    instance_down moto
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
