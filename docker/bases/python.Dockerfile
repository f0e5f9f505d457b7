# Stand-in for python:3.11-slim-bookworm, from Debian 12's Python 3.11 (built by docker/bases.sh only where the
# registry cannot be reached). Like the official image: python, pip and site-packages under /usr/local, LANG set.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
# Debian 12 moves package versions with its point releases: the stand-ins follow the suite (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local \
    && ln -sf python3 /usr/local/bin/python
# The build host's CA bundle, copied after ca-certificates (installing that regenerates the system bundle): pip and
# Python's ssl then trust what the host trusts (a TLS-inspecting proxy's CA, say).
COPY ca-bundle.crt /etc/ssl/certs/build-host-ca.crt
ENV PIP_CERT=/etc/ssl/certs/build-host-ca.crt \
    SSL_CERT_FILE=/etc/ssl/certs/build-host-ca.crt
CMD ["python3"]
