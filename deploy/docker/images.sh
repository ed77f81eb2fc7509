#!/usr/bin/env bash
# Builds every image the compose stack runs on a machine that cannot pull from a registry
# (issue #20), as `make docker-test` and the README's "Run it with Docker" do:
#
#   deploy/docker/images.sh path/to/release/fraudlake
#
# 1. local/debian:bookworm, a base image made by debootstrap from the Debian mirror apt is
#    configured with (about a minute), imported once and kept in the engine's image store: it is
#    rebuilt only when the mirror or the month changes (the key is in the image's label).
# 2. fraudlake:local from the binary given (built outside Docker, so nothing compiles here): the
#    binary and the libxgboost.so.3 it links (found with ldd), stripped, with sql/ and dags/,
#    packed by the Dockerfile's `runtime` target with FRAUDLAKE_BINARY=prebuilt. The stripped
#    copies are cached by the binary's size and mtime, and Docker's layer cache does the rest:
#    an unchanged binary rebuilds nothing.
# 3. fraudlake/prometheus, /alertmanager, /redis, /haproxy:debian from Debian's packages
#    (deploy/docker/*.Dockerfile), used through deploy/docker/compose.debian.yml.
#
# Environment: DOCKER_HOST (the engine), FRAUDLAKE_DEBIAN_MIRROR (default: the first Debian
# bookworm mirror of /etc/apt/sources.list*), FRAUDLAKE_DOCKER_CACHE (default
# ~/.cache/fraudlake-docker). Prints one line per image with the seconds it took.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${1:?usage: deploy/docker/images.sh path/to/release/fraudlake}
[ -x "$bin" ] || { echo "images.sh: $bin is not an executable" >&2; exit 1; }
cache=${FRAUDLAKE_DOCKER_CACHE:-$HOME/.cache/fraudlake-docker}
mkdir -p "$cache"

# BuildKit builds only the stages a target needs (the Rust stage is never started). A Docker
# client from 23 on needs the buildx plugin for it; Debian's docker.io client (20.10) has it
# built in behind DOCKER_BUILDKIT=1.
export DOCKER_BUILDKIT=1
if docker buildx version >/dev/null 2>&1; then
  docker=docker
elif [ -x /usr/bin/docker ]; then
  docker=/usr/bin/docker
else
  echo "images.sh: no Docker client that can build with BuildKit (docker buildx, or Debian's docker.io)" >&2
  exit 1
fi

timed() { # NAME CMD...: runs CMD quietly, prints NAME and its seconds; its log on failure
  local name=$1 log t0=$SECONDS
  shift
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    rm -f "$log"
    echo "images.sh: $name failed" >&2
    return 1
  fi
  rm -f "$log"
  echo "image $name: $((SECONDS - t0))s"
}

# ------------------------------------------------------------------------------ 1. the base
mirror=${FRAUDLAKE_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # deb822 (URIs: + Suites: bookworm) or one-line (deb URI bookworm main) sources.
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | awk '
    /^URIs:/ { uri = $2 } /^Suites:/ && uri != "" { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print uri; exit } }
    /^deb / { for (i = 3; i <= NF; i++) if ($i == "bookworm") { print $2; exit } }' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
key="bookworm $mirror $(date -u +%Y-%m)"
have=$($docker image inspect -f '{{ index .Config.Labels "org.fraudlake.base-key" }}' local/debian:bookworm 2>/dev/null || true)
if [ "$have" != "$key" ]; then
  command -v debootstrap >/dev/null || { echo "images.sh: debootstrap is not installed (make deps)" >&2; exit 1; }
  t0=$SECONDS
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | $docker import --change "LABEL org.fraudlake.base-key=\"$key\"" - local/debian:bookworm >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "image local/debian:bookworm (debootstrap $mirror): $((SECONDS - t0))s"
else
  echo "image local/debian:bookworm: cached ($key)"
fi

# ------------------------------------------------------------------------------ 2. fraudlake
xgb=$(ldd "$bin" | awk '/libxgboost/ { print $3 }')
[ -n "$xgb" ] && [ -f "$xgb" ] || { echo "images.sh: ldd finds no libxgboost for $bin" >&2; exit 1; }
ctx="$cache/context"
stamp="$(stat -c '%s %Y' "$bin") $(stat -c '%s %Y' "$xgb")"
mkdir -p "$ctx/dist/bin" "$ctx/dist/lib"
if [ "$(cat "$ctx/stamp" 2>/dev/null)" != "$stamp" ]; then
  strip --strip-unneeded -o "$ctx/dist/bin/fraudlake" "$bin"
  strip --strip-unneeded -o "$ctx/dist/lib/libxgboost.so.3" "$xgb"
  echo "$stamp" >"$ctx/stamp"
fi
rm -rf "$ctx/sql" "$ctx/dags"
cp -r sql dags "$ctx/"
# mtimes count in neither cache key (Docker checksums content), but keep them stable anyway.
timed fraudlake:local $docker build --network host --target runtime \
  --build-arg FRAUDLAKE_BINARY=prebuilt --build-arg BASE_IMAGE=local/debian:bookworm \
  -f Dockerfile -t fraudlake:local "$ctx"

# ------------------------------------------------------------------------------ 3. the stack
for svc in prometheus alertmanager redis haproxy; do
  timed "fraudlake/$svc:debian" $docker build --network host --build-arg BASE_IMAGE=local/debian:bookworm \
    -f "deploy/docker/$svc.Dockerfile" -t "fraudlake/$svc:debian" deploy/docker
done
# The images these tags replaced: without this, every new binary leaves 200 MB behind.
$docker image prune -f >/dev/null
