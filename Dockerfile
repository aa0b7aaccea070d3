# syntax=docker/dockerfile:1
# flyte-resources-webhook image: `docker build -t flyte-resources-webhook:dev .` (make kind-test does this).
# Stage 1 builds the project's wheel and installs it with its runtime dependencies (no dev extras) into a venv;
# stage 2 copies only that venv onto a clean slim base and runs as the non-root user 65532.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip wheel
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip wheel \
 && /opt/venv/bin/flyte-resources-webhook --help >/dev/null

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="flyte-resources-webhook" \
      org.opencontainers.image.description="Mutating admission webhook applying Flyte task resources from pod annotations" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The chart mounts the config at /etc/flyte-resources-webhook/config/config.yaml and the certificates (or an emptyDir
# for self-managed certificates) at /etc/flyte-resources-webhook/certs; /tmp is an emptyDir.
USER 65532:65532
WORKDIR /tmp
EXPOSE 9443 8080
ENTRYPOINT ["flyte-resources-webhook"]
CMD ["run"]
