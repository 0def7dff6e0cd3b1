#!/usr/bin/env bash
# Build a minimal Debian bookworm image with python3 and python3-venv from Debian packages alone,
# for hosts that reach a Debian mirror but no container registry. Usage:
#   scripts/build-base-image.sh [IMAGE]     (default flaskbench-base:bookworm)
# Needs root and debootstrap (installed with apt-get when missing). Takes about a minute.
set -euo pipefail

image="${1:-flaskbench-base:bookworm}"

die() { echo "build-base-image: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap creates device nodes); run it with sudo"
docker info >/dev/null 2>&1 || die "no Docker daemon answers; start dockerd first"

if ! command -v debootstrap >/dev/null; then
  echo "build-base-image: installing debootstrap" >&2
  apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null \
    || die "could not install debootstrap with apt-get"
fi

# Use the mirror this host's apt already trusts, so it works wherever apt works.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(grep -h -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -h -m1 -E '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs=$(mktemp -d /tmp/flaskbench-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "build-base-image: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed (log above)"; }
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$image" >/dev/null
echo "build-base-image: built $image" >&2
echo "$image"
