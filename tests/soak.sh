#!/usr/bin/env bash
# Soak test (not part of the default test run): a release `heimdall` node fed a mix of cache
# hits, misses, NXDOMAIN and malformed packets for SECONDS (default 300), then a report of
# answers, errors, RSS at start and end, and whether the node is still healthy.
#
#   bash tests/soak.sh          # 5 minutes
#   bash tests/soak.sh 60       # 1 minute
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-300}"
cargo build --release -p heimdall-node --bin heimdall -p heimdall-tests --bin soak
target="${CARGO_TARGET_DIR:-target}"
HEIMDALL_BIN="$target/release/heimdall" "$target/release/soak" "$seconds"
