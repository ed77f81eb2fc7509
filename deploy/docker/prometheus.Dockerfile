# Prometheus from Debian bookworm's package (2.42), for machines where the registry's
# prom/prometheus cannot be pulled (issue #20). Same interface as prom/prometheus: the binary is
# the entrypoint, docker-compose.yml's `command:` gives the flags, data in /prometheus, user
# nobody. deploy/docker/images.sh builds it on the debootstrap base.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus /etc/prometheus \
    && chown nobody:nogroup /prometheus

USER 65534:65534
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
