# Slim runtime image for the relay. Build: docker build -t flex-assist-relay .
# The wheel carries the default prompts, knowledge base, sample call and console page;
# mount your own folder at /srv/prompts (or set RELAY_PROMPTS_DIR) to override them.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY sync_publisher ./sync_publisher
# relay/assets/ links to these two; the wheel build copies their files into the package.
COPY prompts ./prompts
COPY samples ./samples
# The build backend and the runtime packages come from the locks (exact versions and hashes).
COPY requirements/build.txt requirements/runtime.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/build.txt \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
COPY --from=build /src/requirements/runtime.txt /wheels/runtime.txt
RUN pip install --require-hashes --no-deps -r /wheels/runtime.txt \
    && pip install --no-deps /wheels/*.whl && pip check && rm -rf /wheels && useradd --system --uid 10001 --home /srv relay \
    && mkdir -p /srv/data && chown -R relay /srv

# An empty working folder: the relay uses ./prompts when one is mounted here, else its bundled defaults.
WORKDIR /srv
USER relay
ENV RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8080 \
    RELAY_DATA_DIR=/srv/data
# Call records (SQLite) and call audio: keep them on a volume, or set RELAY_DATABASE_URL.
VOLUME /srv/data
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request,sys; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"RELAY_PORT\",\"8080\")}/healthz', timeout=2); sys.exit(0)" || exit 1

# SIGTERM drains: readiness turns 503, calls finish (RELAY_DRAIN_DEADLINE_S), then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["relay"]
CMD ["serve"]
