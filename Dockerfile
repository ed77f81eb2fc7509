# fraudlake image (issues #8, #20): the `fraudlake` binary and the libxgboost it links, on a
# slim Debian, as a non-root user, with the lake on a volume. Built and run by `make docker-test`
# (deploy/tests/docker_test.py; README, "Run it with Docker").
#
# From source (BuildKit, the default builder of current Docker; needs the registry's rust and
# debian images):
#
#   docker build -t fraudlake:local .
#
# From a binary built outside (no compile in Docker; what `make docker-test` does): a context
# holding dist/bin/fraudlake, dist/lib/libxgboost.so.3, sql/ and dags/ (deploy/docker/images.sh
# assembles one, stripped), on any Debian bookworm base:
#
#   DOCKER_BUILDKIT=1 docker build --target runtime --build-arg FRAUDLAKE_BINARY=prebuilt \
#       --build-arg BASE_IMAGE=local/debian:bookworm -t fraudlake:local CONTEXT
#
# BuildKit builds only the stages the target needs: with FRAUDLAKE_BINARY=prebuilt the Rust
# stage is never started (nor its base image pulled).

# `source` (compile here) or `prebuilt` (copy dist/ from the context).
ARG FRAUDLAKE_BINARY=source
# The runtime base: any Debian bookworm (the tests use one made by debootstrap).
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm

# ---------------------------------------------------------------------------------------------
# From source: the workspace, release profile. libxgboost is compiled from its vendored source
# (cmake, ninja, g++; bindgen needs libclang; librdkafka needs zlib and pkg-config); LightGBM too,
# with a newer CMake.
FROM ${RUST_IMAGE} AS binary-source

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake ninja-build libclang-dev g++ pkg-config \
       zlib1g-dev binutils mold python3-venv \
    && rm -rf /var/lib/apt/lists/*

# LightGBM 4.7 needs CMake >= 3.28 (bookworm has 3.25): the PyPI wheel, in a venv of its own, run
# through build-support/cmake (the CMAKE of .cargo/config.toml), as `make deps` does outside.
ENV FRAUDLAKE_CMAKE=/opt/cmake/bin/cmake
RUN python3 -m venv /opt/cmake && /opt/cmake/bin/pip install --no-cache-dir -q cmake==3.31.10

WORKDIR /src
COPY . .

# The target folder and the cargo registry are BuildKit caches: a rebuild after a source change
# does not recompile libxgboost, DataFusion and the rest. What the runtime needs is copied out
# of the cache into /out within the same step, stripped (the debug info is most of the size).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin fraudlake \
    && mkdir -p /out/bin /out/lib \
    && strip --strip-unneeded -o /out/bin/fraudlake target/release/fraudlake \
    && xgb="$(ldd target/release/fraudlake | awk '/libxgboost/ { print $3 }')" \
    && test -n "$xgb" \
    && strip --strip-unneeded -o /out/lib/libxgboost.so.3 "$xgb"

# ---------------------------------------------------------------------------------------------
# Prebuilt: what deploy/docker/images.sh put in the context's dist/.
FROM scratch AS binary-prebuilt
COPY dist/ /out/

# The chosen one (a stage alias, selected by the build argument).
# hadolint ignore=DL3006
FROM binary-${FRAUDLAKE_BINARY} AS binary

# ---------------------------------------------------------------------------------------------
# Runtime: the binary in /usr/local/bin and libxgboost in /usr/local/lib (the binary's rpath
# has $ORIGIN/../lib), the feature SQL and the DAG definitions.
FROM ${BASE_IMAGE} AS runtime

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# libgomp1: libxgboost's OpenMP; ca-certificates: s3:// and https lakes; curl: HEALTHCHECK.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 fraudlake \
    && useradd --system --uid 10001 --gid fraudlake --home-dir /opt/fraudlake --no-create-home \
       --shell /usr/sbin/nologin fraudlake \
    && mkdir -p /lake /opt/fraudlake \
    && chown fraudlake:fraudlake /lake

COPY --from=binary /out/bin/fraudlake /usr/local/bin/fraudlake
COPY --from=binary /out/lib/ /usr/local/lib/
COPY sql/ /opt/fraudlake/sql/
COPY dags/ /opt/fraudlake/dags/

# Fails the build if a shared library is missing.
RUN ldconfig \
    && ! ldd /usr/local/bin/fraudlake | grep -q 'not found' \
    && fraudlake --version

ENV FRAUDLAKE_FEATURES_SQL=/opt/fraudlake/sql/features.sql \
    FRAUDLAKE_DAGS=/opt/fraudlake/dags \
    FRAUDLAKE_LAKE=/lake \
    FRAUDLAKE_LOG_FORMAT=json \
    FRAUDLAKE_QUIET=true

WORKDIR /opt/fraudlake
USER 10001:10001

VOLUME ["/lake"]
EXPOSE 8080

# /health answers as soon as the server listens, after the online state is rebuilt from the
# lake (minutes on a large lake: hence the start period). `|| exit 1`: Docker reads exit codes
# other than 0 and 1 as reserved.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS --max-time 2 http://127.0.0.1:8080/health || exit 1"]

# The write routes need API keys, kept hashed in the lake (`fraudlake keys create --scope
# score,label,admin` once, e.g. the compose file's lake-seed); without any, serve stops with
# a message saying so. --insecure-no-auth is refused on 0.0.0.0.
CMD ["fraudlake", "--lake", "/lake", "serve", "--addr", "0.0.0.0:8080", "--scheduler"]
