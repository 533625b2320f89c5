#!/usr/bin/env bash
# Runs the fleet's compose file with whichever Compose tool exists: the `docker compose`
# plugin, or Debian's `docker-compose` (v1). The project name is fixed (`heimdall`, or
# $HEIMDALL_PROJECT) so scripts and tests find the containers and networks.
# Usage: deploy/compose.sh ARGS...   e.g. deploy/compose.sh ps
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=${HEIMDALL_PROJECT:-heimdall}

if docker compose version >/dev/null 2>&1; then
    exec docker compose -p "$PROJECT" -f "$DIR/docker-compose.yml" "$@"
elif command -v docker-compose >/dev/null 2>&1; then
    exec docker-compose -p "$PROJECT" -f "$DIR/docker-compose.yml" "$@"
else
    echo "compose: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi
