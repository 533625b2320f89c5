#!/usr/bin/env bash
# Stops the fleet and removes its containers and networks. The nodes' Raft data volumes are
# kept unless --volumes is given.
# Usage: deploy/down.sh [--volumes]
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "${1:-}" = "--volumes" ]; then
    "$DIR/compose.sh" down --volumes --remove-orphans
else
    "$DIR/compose.sh" down --remove-orphans
fi
