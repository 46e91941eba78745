# One image recipe for every Python part of the system; PACKAGE picks the workspace member.
#   docker build -f deploy/docker/service.Dockerfile --build-arg PACKAGE=capps-gateway .
# The lock is used as is (--frozen), so images hold exactly what CI tested.

FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /bin/uv
ARG PACKAGE
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first, in their own layer, so code changes do not reinstall them.
COPY pyproject.toml uv.lock ./
COPY libs/catalog/pyproject.toml libs/catalog/pyproject.toml
COPY libs/events/pyproject.toml libs/events/pyproject.toml
COPY libs/kit/pyproject.toml libs/kit/pyproject.toml
COPY libs/usage/pyproject.toml libs/usage/pyproject.toml
COPY services/registry/pyproject.toml services/registry/pyproject.toml
COPY services/gateway/pyproject.toml services/gateway/pyproject.toml
COPY services/usage-aggregator/pyproject.toml services/usage-aggregator/pyproject.toml
COPY deploy/demo-api/pyproject.toml deploy/demo-api/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-workspace --package "$PACKAGE"
COPY libs libs
COPY services services
COPY deploy/demo-api deploy/demo-api
# The gateway's per-call modules are compiled with mypyc (services/gateway/native.py); the
# compiler and its build tools stay in this stage, the wheel below packs the extensions.
RUN if [ "$PACKAGE" = capps-gateway ]; then \
      apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
      && rm -rf /var/lib/apt/lists/* \
      && uv sync --frozen --no-dev --group native --package capps-gateway \
      && uv run --frozen --no-sync python services/gateway/native.py --build-dir /tmp/native; \
    fi
RUN uv sync --frozen --no-dev --no-editable --package "$PACKAGE"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app capps \
 && mkdir -p /var/lib/capps/gateway-spool \
 && chown capps /var/lib/capps/gateway-spool
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY config /app/config
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 CATALOG_PATH=/app/config/catalog.yaml
USER capps
