#!/usr/bin/env bash
# base-images.sh: the two base images the Dockerfile names, debian:bookworm-slim and rust:1-bookworm,
# for buildah (./x.sh image). Each missing one is pulled from Docker Hub; where no registry is
# reachable (our CI machines reach Debian's mirror and static.rust-lang.org, not Docker Hub), it is
# made instead from Debian's packages (mmdebstrap) and rustup, and stored under the same name, so the
# Dockerfile builds unchanged with --pull=never.
#   deploy/image/base-images.sh          pulls or makes whichever of the two is missing
#   deploy/image/base-images.sh --force  makes both again without asking a registry
set -euo pipefail
cd "$(dirname "$0")"

SLIM=docker.io/library/debian:bookworm-slim
RUST=docker.io/library/rust:1-bookworm
BUILD_BASE=localhost/imds-console-base/bookworm-build
MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
# The part of buildpack-deps:bookworm (what rust:1-bookworm is built on) a Rust build uses.
BUILD_PACKAGES=ca-certificates,curl,git,gcc,g++,libc6-dev,make,pkg-config,libssl-dev,xz-utils,procps,file,patch,dpkg-dev,unzip,netbase

force=false
[ "${1:-}" != "--force" ] || force=true

# True when $1 is neither stored nor pulled now.
missing() {
  $force && return 0
  buildah inspect --type image "$1" >/dev/null 2>&1 && return 1
  ! buildah pull --quiet "$1" >/dev/null 2>&1
}

# A root file system from Debian's packages, imported as an image named $1. With $3 = trust-host-cas,
# it also trusts the certificate authorities this machine added (/usr/local/share/ca-certificates),
# as a site's own base images do: behind a TLS-inspecting proxy, the build's downloads (rustup, crates)
# need them. Only the build stage's image gets them; the runtime image is made without.
bootstrap() {
  local name=$1 include=$2 trust=${3:-} tar hooks=()
  if [ "$trust" = trust-host-cas ] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    hooks=(--customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share'
      --customize-hook='chroot "$1" update-ca-certificates')
  fi
  tar=$(mktemp --suffix .tar)
  mmdebstrap --variant=minbase --quiet ${include:+--include="$include"} "${hooks[@]}" bookworm "$tar" "${MIRRORS[@]}"
  buildah rmi --force "$name" >/dev/null 2>&1 || true
  podman import --quiet --change 'CMD ["bash"]' "$tar" "$name" >/dev/null
  rm -f "$tar"
  echo "base-images.sh: made $name"
}

if missing "$SLIM"; then
  bootstrap "$SLIM" ""
fi
if missing "$RUST"; then
  bootstrap "$BUILD_BASE" "$BUILD_PACKAGES" trust-host-cas
  buildah bud --quiet --isolation chroot --pull=never -f rust.Containerfile -t "$RUST" . >/dev/null
  buildah rmi "$BUILD_BASE" >/dev/null
  echo "base-images.sh: made $RUST"
fi
