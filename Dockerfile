# Image of the staffml-dagster code. docker-compose.yml runs it three ways: as the gRPC code
# server (this CMD; runs execute here), as dagster-webserver and as dagster-daemon.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    STAFFML_SPECS_DIR=/opt/dagster/app/specs \
    STAFFML_ASSETS_DIR=/opt/dagster/app/assets \
    STAFFML_DATA_DIR=/opt/dagster/data

# The CPU build of torch first: the project pins torch==2.13.0, which 2.13.0+cpu satisfies,
# so the next install does not pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/dagster/app
# Dependencies and package first (cached while only specs/ or assets/ change).
COPY pyproject.toml README.md ./
COPY staffml_dagster ./staffml_dagster
RUN pip install ".[deploy]"
# The package is installed into site-packages, so specs/ and assets/ are found through
# STAFFML_SPECS_DIR and STAFFML_ASSETS_DIR (set above), not next to the code.
COPY specs ./specs
COPY assets ./assets
COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/

# Unprivileged user; the data volume (warehouse, reports, compute logs) is created owned by it.
RUN useradd --system --uid 10001 --home-dir /opt/dagster --no-create-home dagster \
    && mkdir -p /opt/dagster/data \
    && chown -R dagster /opt/dagster/data /opt/dagster/dagster_home
USER dagster

EXPOSE 4000 3000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "staffml_dagster.definitions", "--location-name", "staffml_dagster"]
