# One image for every adapter and service of docker-compose.yml (each runs its own command).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bus bus
COPY schemas schemas
COPY adapters adapters
COPY services services
COPY demo demo
RUN pip install --no-cache-dir . \
 && mkdir -p /var/lib/simpul && chown nobody /var/lib/simpul
# Checkpoints, quarantine files and SQLite stores (when no PostgreSQL URL is set) live here.
ENV SIMPUL_DATA_DIR=/var/lib/simpul
USER nobody
CMD ["simpul", "--help"]
