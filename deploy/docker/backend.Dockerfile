# syntax=docker/dockerfile:1
# The backend image: the API server (`tandem api`, the default), the background workers
# (`tandem worker`) and the web server (`tandem web`), chosen by the command.
#
#   docker build -f deploy/docker/backend.Dockerfile -t tandem/backend:0.1.0 .
#
# The workers chunk with the embedding model's own tokenizer, so this image carries the
# prepared model's tokenizer.json and manifest.json (not its weights: workers never run
# it) in TANDEM_MODEL_CACHE=/opt/tandem/models, read-only. They come from the same `model`
# stage as the model server's: keep the first three stages identical to
# model-server.Dockerfile's so the two builds share their layers.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM python-base AS runtime-venv
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python-base AS model
# `torch==2.13.0` from the default index is a CUDA build on Linux (several GB, used once
# here and then thrown away with this stage). For the CPU-only build, pass e.g.
#   --build-arg TORCH_SPEC=torch==2.13.0+cpu --build-arg TORCH_PIP_ARGS="--extra-index-url <PyTorch's CPU wheel index>"
# (DEPLOYMENT.md, "Building the images").
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_PIP_ARGS=
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/prepare \
 && /opt/prepare/bin/pip install ${TORCH_PIP_ARGS} "${TORCH_SPEC}" \
 && /opt/prepare/bin/pip install '.[prepare]'
RUN TANDEM_MODEL_CACHE=/opt/tandem/models /opt/prepare/bin/tandem models prepare \
 && TANDEM_MODEL_CACHE=/opt/tandem/models /opt/prepare/bin/tandem models list \
 && chmod -R a+rX /opt/tandem/models

# Of each prepared model, what the workers read.
FROM model AS model-tokenizers
RUN for model in /opt/tandem/models/*/; do \
      name=$(basename "$model"); \
      mkdir -p "/opt/tandem/tokenizers/$name" \
      && cp "$model/manifest.json" "$model/tokenizer.json" "/opt/tandem/tokenizers/$name/"; \
    done \
 && chmod -R a+rX /opt/tandem/tokenizers

FROM python-base AS runtime
RUN groupadd --system --gid 10001 tandem \
 && useradd --system --uid 10001 --gid tandem --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin tandem \
 && mkdir -p /app \
 && chown tandem:tandem /app
COPY --from=runtime-venv /opt/venv /opt/venv
COPY --from=model-tokenizers /opt/tandem/tokenizers /opt/tandem/models
COPY --chmod=0644 deploy/docker/healthcheck.py /opt/tandem/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/app \
    HF_HUB_OFFLINE=1 \
    TANDEM_MODEL_CACHE=/opt/tandem/models \
    TANDEM_BIND_HOST=0.0.0.0 \
    API_SERVER_PORT=8080 \
    WEB_SERVER_PORT=3000
WORKDIR /app
USER 10001:10001
EXPOSE 8080 3000
# Run with a read-only root filesystem: uploads are spooled to /tmp.
VOLUME ["/tmp"]
# For the API server (the default command). The web server's is /healthz
# (`python /opt/tandem/healthcheck.py web /healthz`); a worker has no HTTP endpoint:
# Compose sets both per service.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/tandem/healthcheck.py", "api", "/api/health"]
CMD ["tandem", "api"]
