# syntax=docker/dockerfile:1
# fraudlake image (issue #8): the `fraudlake` binary and the libxgboost it links, on a slim
# Debian, as a non-root user, with the lake on a volume.
#
#   docker build -t fraudlake:local .
#   docker run --rm -v fraudlake-lake:/lake -p 8080:8080 fraudlake:local
#
# No Docker engine runs on the project's machines: this file is linted (hadolint) and checked
# (monitoring/tests/run.py) but has not been built there. See monitoring/README.md.

# ---------------------------------------------------------------------------------------------
# Build: the workspace, release profile. libxgboost is compiled from its vendored source by
# xgboost_lib-sys (cmake, ninja, g++; bindgen needs libclang).
FROM rust:1.95.0-slim-bookworm AS build

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake ninja-build libclang-dev g++ pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The target folder and the cargo registry are BuildKit caches: a rebuild after a source change
# does not recompile libxgboost, DataFusion and the rest. Everything the runtime stage needs is
# copied out of the cache into /out within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin fraudlake \
    && mkdir -p /out/bin /out/lib \
    && cp target/release/fraudlake /out/bin/fraudlake \
    && xgb="$(ldd target/release/fraudlake | awk '/libxgboost/ { print $3 }')" \
    && test -n "$xgb" \
    && cp -P "$(dirname "$xgb")"/libxgboost.so* /out/lib/

# ---------------------------------------------------------------------------------------------
# Runtime: debian slim, the binary in /usr/local/bin and libxgboost in /usr/local/lib (the
# binary's rpath has $ORIGIN/../lib), the feature SQL and the DAG definitions.
FROM debian:bookworm-slim AS runtime

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

COPY --from=build /out/bin/fraudlake /usr/local/bin/fraudlake
COPY --from=build /out/lib/ /usr/local/lib/
COPY sql/ /opt/fraudlake/sql/
COPY dags/ /opt/fraudlake/dags/

# Fails the build if a shared library is missing.
RUN ldconfig \
    && ! ldd /usr/local/bin/fraudlake | grep -q 'not found' \
    && fraudlake --version

ENV FRAUDLAKE_FEATURES_SQL=/opt/fraudlake/sql/features.sql \
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
