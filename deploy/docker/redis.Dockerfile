# Redis from Debian bookworm's package (7.0), for machines where the registry's redis image
# cannot be pulled (issue #20). Same interface as the official redis:7.0 image for what
# docker-compose.yml uses: `redis-server` on the PATH, data in /data, an unprivileged user.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# The user first, with the uid of the upstream image (the package keeps an existing user), so
# that volumes and Kubernetes' runAsUser agree across both images.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data

USER 999:999
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6379
CMD ["redis-server", "--dir", "/data"]
