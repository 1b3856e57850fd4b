# The operator image: slim, non-root, pinned base. Not built in this repository's CI (the development machine has
# no Docker engine); `make e2e-kind` builds and tests it where Docker exists. See docs/install.md.
# Pin the base by digest when you publish: docker buildx imagetools inspect python:3.11.14-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-compile . \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# 65532: the conventional "nonroot" uid; the chart sets runAsNonRoot, readOnlyRootFilesystem and mounts /tmp.
USER 65532:65532
EXPOSE 8080 9443
ENTRYPOINT ["redisdb-operator"]
CMD ["run"]
