# govbridge daemon image. Build: docker build -t govbridge .
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY bridge ./bridge
COPY adapters ./adapters
RUN pip install '.[postgres]' && pip install 'mastodon-mock>=0.6' \
    && useradd --system --home /var/lib/govbridge govbridge \
    && mkdir -p /var/lib/govbridge && chown govbridge /var/lib/govbridge
COPY examples /etc/govbridge
USER govbridge
WORKDIR /var/lib/govbridge
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status==200 else 1)"
ENTRYPOINT ["govbridge"]
CMD ["run", "-c", "/etc/govbridge/govbridge.toml"]
