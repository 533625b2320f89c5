#!/usr/bin/env bash
# Starts the fleet: builds heimdall:local if it does not exist (or with --build), writes the
# secrets on first use, starts the containers and waits until every node reports healthy.
# Usage: deploy/up.sh [--build]
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=heimdall:local
NODES=(node1 node2 node3)
WAIT_SECONDS=${HEIMDALL_UP_WAIT:-120}

if [ "${1:-}" = "--build" ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    "$DIR/build-image.sh" "$IMAGE"
fi

# Secrets: 32 random bytes as hex each, owner-readable only, never committed.
umask 077
for name in cluster_secret admin_token; do
    file="$DIR/secrets/$name"
    if [ ! -s "$file" ]; then
        echo "up: writing $file"
        od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$file"
    fi
done
# The containers read the files as root; keep them unreadable by other users of the host.
chmod 600 "$DIR/secrets/cluster_secret" "$DIR/secrets/admin_token"

echo "up: starting the fleet"
"$DIR/compose.sh" up -d

echo "up: waiting up to ${WAIT_SECONDS}s for ${NODES[*]} to be healthy"
deadline=$((SECONDS + WAIT_SECONDS))
for node in "${NODES[@]}"; do
    while true; do
        id=$("$DIR/compose.sh" ps -q "$node")
        status=$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null || echo unknown)
        [ "$status" = healthy ] && break
        if [ $SECONDS -ge $deadline ]; then
            echo "up: $node is $status after ${WAIT_SECONDS}s; its log:" >&2
            docker logs --tail 30 "$id" >&2 || true
            exit 1
        fi
        sleep 1
    done
    echo "up: $node healthy"
done

cat <<MSG
up: the fleet is running
  dig @127.0.0.1 -p 15301 www.demo.test
  heimdallctl --endpoint http://127.0.0.1:15051 --token-file $DIR/secrets/admin_token cluster members
MSG
