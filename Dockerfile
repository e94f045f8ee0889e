# cloudsnap-operator image. Build: docker build -t cloudsnap-operator .
# Both stages use the same pinned base, so the venv built in the first runs as is in the second.

FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY deploy/docker/install.sh /usr/local/bin/cloudsnap-install
# Dependencies first, from the exact lock: this layer is reused until requirements.lock changes.
COPY requirements.lock ./
RUN cloudsnap-install deps /opt/venv requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN cloudsnap-install app /opt/venv /src

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="cloudsnap-operator" \
      org.opencontainers.image.description="Declarative Huawei Cloud EVS disk snapshots for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
# A name for the uid: kopf asks getpass.getuser() at start-up, which fails for a uid without one.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nonroot
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so that runAsNonRoot can be verified by the kubelet without a passwd lookup.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["cloudsnap-operator", "run"]
