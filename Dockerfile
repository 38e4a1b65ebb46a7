# Slim runtime image for the relay. Build: docker build -t flex-assist-relay .
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY sync_publisher ./sync_publisher
COPY prompts ./prompts
RUN pip install . && useradd --system --uid 10001 --home /app relay && chown -R relay /app

USER relay
ENV RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8080 \
    RELAY_PROMPTS_DIR=/app/prompts
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request,sys; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"RELAY_PORT\",\"8080\")}/healthz', timeout=2); sys.exit(0)" || exit 1

# SIGTERM drains: readiness turns 503, calls finish (RELAY_DRAIN_DEADLINE_S), then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["relay"]
CMD ["serve"]
