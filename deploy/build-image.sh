#!/usr/bin/env bash
# Builds statically linked `heimdall` and `heimdallctl` (glibc, +crt-static) and the image
# heimdall:local from deploy/Dockerfile, offline: the image starts FROM scratch, so nothing is
# pulled. Usage: deploy/build-image.sh [IMAGE_TAG]   (default heimdall:local)
set -euo pipefail

TAG=${1:-heimdall:local}
TARGET=x86_64-unknown-linux-gnu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Cargo's target directory (CARGO_TARGET_DIR when set, as cargo itself does).
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STAGE="$TARGET_DIR/docker-stage"

if ! command -v docker >/dev/null 2>&1; then
    echo "build-image: docker is not installed" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "build-image: the Docker daemon is not reachable (docker info failed)" >&2
    exit 1
fi

echo "build-image: compiling static binaries (release, --target $TARGET, +crt-static)"
# The explicit --target keeps RUSTFLAGS away from build scripts and proc-macros, which must
# stay dynamically linked. The io_uring feature stays in (nodes run epoll unless
# dns.io_backend asks for io_uring): where a container's seccomp profile blocks io_uring, the
# node's start-up probe fails and it logs that it uses epoll instead.
(
    cd "$ROOT"
    # No debug info and stripped symbols keep the binaries (and the image) small.
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=false \
        CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked \
        --target "$TARGET" -p heimdall-node --bin heimdall -p heimdall-client --bin heimdallctl
)

rm -rf "$STAGE"
mkdir -p "$STAGE"
cp "$TARGET_DIR/$TARGET/release/heimdall" "$TARGET_DIR/$TARGET/release/heimdallctl" "$STAGE/"
cp "$ROOT/deploy/zone/demo.zone" "$STAGE/"
for bin in heimdall heimdallctl; do
    if ldd "$STAGE/$bin" >/dev/null 2>&1 && ! ldd "$STAGE/$bin" 2>&1 | grep -q "statically linked"; then
        echo "build-image: $bin is dynamically linked; it would not run FROM scratch" >&2
        ldd "$STAGE/$bin" >&2
        exit 1
    fi
done

echo "build-image: docker build -t $TAG (context $STAGE)"
docker build --quiet -t "$TAG" -f "$ROOT/deploy/Dockerfile" "$STAGE"
docker image ls "$TAG"
