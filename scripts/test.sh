#!/usr/bin/env bash
# The README's second command: start the local S3 servers (installing Garage
# once if needed) and run the whole test suite against them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/s3-local.sh up)"
cargo test --all-targets "$@"
