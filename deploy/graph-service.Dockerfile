# syntax=docker/dockerfile:1
# The local stand-in for TF Serving as an image: `graph-service` (graph_service/) serving the same
# /models/models.config on the same ports, for machines where the tensorflow/serving image is
# unavailable (ARM laptops: it is published for linux/amd64 only). compose.standalone.yaml uses it:
#   COMPOSE_FILE=compose.yaml:compose.standalone.yaml docker compose up
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first (the [graph] group, pinned by requirements.txt used as constraints), so code
# edits do not reinstall TensorFlow.
COPY requirements.txt pyproject.toml README.md ./
RUN mkdir graph_service \
    && touch graph_service/__init__.py \
    && pip install --no-cache-dir --constraint requirements.txt ".[graph]" \
    && pip uninstall --yes tiered-serving-kit
COPY graph_service/ graph_service/
COPY converters/ converters/
COPY tfs_protocol/ tfs_protocol/
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=3 \
    TF_ENABLE_ONEDNN_OPTS=0
COPY --from=build /opt/venv /opt/venv
COPY --chmod=755 deploy/tfserving/model-available /usr/local/bin/model-available
USER 65534:65534
EXPOSE 8500 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=5 CMD ["model-available"]
# The same flags as graph_service/Dockerfile's tensorflow_model_server command line; --port is
# the gRPC port (served once graph-service has its gRPC front, accepted and unused before).
ENTRYPOINT ["graph-service", \
            "--port=8500", \
            "--rest_api_port=8501", \
            "--model_config_file=/models/models.config", \
            "--model_config_file_poll_wait_seconds=30", \
            "--file_system_poll_wait_seconds=1", \
            "--rest_api_timeout_in_ms=30000", \
            "--allow_version_labels_for_unavailable_models=true"]
CMD []
