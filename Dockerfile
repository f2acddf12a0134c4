# The worker image: docker compose builds it (docker-compose.yml); the Helm chart runs it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY integrations integrations
COPY schemas schemas
# A numeric user (Kubernetes' runAsNonRoot can check only a number) that owns /data, where
# the tables' RocksDB store lives: /app stays root's and read-only to the worker.
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --no-create-home courier \
 && mkdir -p /data && chown 10001 /data
ENV COURIER_DATA_DIR=/data
USER 10001
ENTRYPOINT ["courier"]
CMD ["worker"]
