FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bus bus
COPY schemas schemas
COPY adapters adapters
COPY services services
COPY demo demo
RUN pip install --no-cache-dir .
USER nobody
CMD ["simpul", "--help"]
