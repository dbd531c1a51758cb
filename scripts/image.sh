#!/usr/bin/env bash
# `make image`: the ticketserve container image (Containerfile), built with podman and without
# any container registry:
#
#   1. the base: Debian bookworm from Debian packages (debootstrap, as root), imported with
#      `podman import` as localhost/ticketserve-base:bookworm; made once and then reused
#      (`podman rmi localhost/ticketserve-base:bookworm` makes it again);
#   2. the offline bundle (scripts/bundle.sh) as the build context;
#   3. `podman build` of the Containerfile on that base.
#
# Settings (environment or make variables):
#   IMAGE    the name to tag (default localhost/ticketserve:<version>)
#   BASE     build on this image instead, e.g. docker.io/library/debian:bookworm-slim
#   MIRROR   the Debian mirror debootstrap reads (default http://deb.debian.org/debian; a local
#            mirror or apt proxy on an air-gapped host)
#   ULIMITS  podman's --ulimit values for the build (default nofile=16384:16384
#            nproc=16384:16384: a confined host may refuse podman's own defaults; ULIMITS= none)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
VERSION=$($BIN/python -c 'import importlib.metadata as m; print(m.version("ticketserve"))')
IMAGE=${IMAGE:-localhost/ticketserve:$VERSION}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ULIMITS=${ULIMITS-nofile=16384:16384 nproc=16384:16384}
DEFAULT_BASE=localhost/ticketserve-base:bookworm

tools=(podman)
[ -n "${BASE:-}" ] || tools+=(debootstrap)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || {
    echo "image.sh: $tool is missing (Debian: apt-get install podman buildah runc debootstrap)" >&2
    exit 1
  }
done
ulimit_flags=()
for limit in $ULIMITS; do ulimit_flags+=(--ulimit "$limit"); done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ -z "${BASE:-}" ]; then
  BASE=$DEFAULT_BASE
  if ! podman image exists "$BASE"; then
    echo "== base image $BASE: debootstrap bookworm from $MIRROR"
    start=$(date +%s)
    # The runtime's packages go into the base itself, so the build needs no mirror after this.
    debootstrap --variant=minbase \
      --include=python3,python3-venv,openjdk-17-jre-headless,tini,ca-certificates \
      bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
      tail -20 "$WORK/debootstrap.log" >&2
      exit 1
    }
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    tar -C "$WORK/rootfs" --numeric-owner -c . | podman import --quiet - "$BASE" >/dev/null
    rm -rf "$WORK/rootfs"
    echo "made $BASE in $(($(date +%s) - start)) s"
  fi
fi

echo "== the offline bundle (the build context)"
mkdir -p "$WORK/context"
BUNDLE_DIR=$WORK/bundle VENV=${VENV:-.venv} bash scripts/bundle.sh
mv "$WORK"/bundle/ticketserve-*-offline.tar "$WORK/context/ticketserve-offline.tar"

echo "== podman build $IMAGE on $BASE"
start=$(date +%s)
# Docker format: OCI images have no HEALTHCHECK. No layer cache: a rebuild installs the bundle
# anew, and no intermediate image is left behind.
podman build --quiet --layers=false --format docker "${ulimit_flags[@]}" \
  --build-arg "BASE=$BASE" --file Containerfile --tag "$IMAGE" "$WORK/context" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE in $(($(date +%s) - start)) s: $((size / 1000000)) MB"
