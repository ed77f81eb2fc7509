# HAProxy from Debian bookworm's package (2.6), for machines where the registry's haproxy:2.6
# image cannot be pulled (issue #20). Same interface as the official image for what
# docker-compose.yml uses: `haproxy` on the PATH, the configuration at
# /usr/local/etc/haproxy/haproxy.cfg, an unprivileged user.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# The user first, with a fixed uid (the package keeps an existing system user), so that USER
# can be numeric. Not the upstream image's 99: Debian's adduser takes only 100-999 as system.
# hadolint ignore=DL3008
RUN groupadd --system --gid 199 haproxy \
    && useradd --system --uid 199 --gid haproxy --home-dir /var/lib/haproxy --shell /usr/sbin/nologin haproxy \
    && apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/etc/haproxy

USER 199:199
EXPOSE 8080
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg", "-db"]
