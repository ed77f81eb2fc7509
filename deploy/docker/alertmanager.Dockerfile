# Alertmanager from Debian bookworm's package (0.25; Debian names the binary
# prometheus-alertmanager), for machines where the registry's prom/alertmanager cannot be pulled
# (issue #20). Same interface as prom/alertmanager: the binary is the entrypoint, compose gives
# the flags, data in /alertmanager, user nobody.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-alertmanager \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /alertmanager /etc/alertmanager \
    && chown nobody:nogroup /alertmanager

USER 65534:65534
WORKDIR /alertmanager
VOLUME ["/alertmanager"]
EXPOSE 9093
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
