#!/usr/bin/env bash
# Build a minimal Debian bookworm image with python3 and python3-venv from Debian packages alone,
# for hosts that reach a Debian mirror but no container registry. Usage:
#   scripts/build-base-image.sh [IMAGE]     (default flaskbench-base:bookworm)
#   scripts/build-base-image.sh --print-mirror    (only say which Debian mirror it would use)
# Needs root and debootstrap (installed with apt-get when missing). Takes about a minute.
# The mirror is DEBIAN_MIRROR, else the one this host's apt uses for bookworm (APT_ETC, default
# /etc/apt, is where apt's sources are read from).
set -euo pipefail

image="${1:-flaskbench-base:bookworm}"

die() { echo "build-base-image: $*" >&2; exit 1; }

# The host's own mirror works wherever apt works; there is no fallback, since a mirror the host
# does not use may well be unreachable from it.
apt_mirror() {
  local apt="${APT_ETC:-/etc/apt}"
  # deb822 stanzas (*.sources) whose Suites include bookworm itself, then one-line sources.
  awk 'BEGIN { RS = ""; FS = "\n" }
       { uris = ""; suite = 0
         for (i = 1; i <= NF; i++) {
           if ($i ~ /^URIs:/) { split($i, f, /[ \t]+/); uris = f[2] }
           if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) suite = 1
         }
         if (suite && uris != "") { print uris; exit } }' \
    "$apt"/sources.list.d/*.sources 2>/dev/null || true
  awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {
         if ($(i + 1) == "bookworm") print $i; break } }' \
    "$apt"/sources.list "$apt"/sources.list.d/*.list 2>/dev/null || true
}
mirror="${DEBIAN_MIRROR:-$(apt_mirror | head -n1)}"
[ -n "$mirror" ] || die "no Debian bookworm mirror in this host's apt sources; set DEBIAN_MIRROR=<mirror URL> and run it again"

if [ "$image" = "--print-mirror" ]; then
  echo "$mirror"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap creates device nodes); run it with sudo"
docker info >/dev/null 2>&1 || die "no Docker daemon answers; start dockerd first"

if ! command -v debootstrap >/dev/null; then
  echo "build-base-image: installing debootstrap" >&2
  apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null \
    || die "could not install debootstrap with apt-get"
fi

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
