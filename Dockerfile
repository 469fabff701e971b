# govbridge images, two targets:
#   runtime (the default): the daemon only (`govbridge run`): bridge/, adapters/, schemas/, and
#     nothing a department does not run (no simulators, demo or benchmark).
#   tools: runtime + the govbridge-tools distribution (tools/): `govbridge simulate all`,
#     `govbridge demo`, `govbridge bench`.
# Build: docker build -t govbridge .   and   docker build --target tools -t govbridge-tools .
# docker-compose.yml builds and runs both.
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY bridge ./bridge
COPY adapters ./adapters
# postgres: asyncpg for the PostgreSQL store.
RUN pip install '.[postgres]' \
    && useradd --system --home-dir /var/lib/govbridge govbridge \
    && mkdir -p /var/lib/govbridge && chown govbridge /var/lib/govbridge
COPY examples /etc/govbridge
USER govbridge
WORKDIR /var/lib/govbridge
# 8080: the bridge's HTTP server.
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["govbridge"]
CMD ["run", "-c", "/etc/govbridge/govbridge.toml"]

FROM runtime AS tools
USER root
COPY tools /app/tools
RUN pip install /app/tools
USER govbridge
# 8101-8106: the simulators (`govbridge simulate all`).
EXPOSE 8101-8106
HEALTHCHECK NONE
CMD ["simulate", "all", "--host", "0.0.0.0"]
