# govbridge image: the daemon (`govbridge run`) and the simulators (`govbridge simulate all`).
# Build: docker build -t govbridge .   — docker-compose.yml builds and runs it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY bridge ./bridge
COPY adapters ./adapters
# postgres: asyncpg for the PostgreSQL store; demo: mastodon-mock for `govbridge simulate`.
RUN pip install '.[postgres,demo]' \
    && useradd --system --home-dir /var/lib/govbridge govbridge \
    && mkdir -p /var/lib/govbridge && chown govbridge /var/lib/govbridge
COPY examples /etc/govbridge
USER govbridge
WORKDIR /var/lib/govbridge
# 8080: the bridge's HTTP server; 8101-8106: the simulators (`simulate all`).
EXPOSE 8080 8101-8106
# For the daemon; the compose file gives the simulators their own check.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["govbridge"]
CMD ["run", "-c", "/etc/govbridge/govbridge.toml"]
