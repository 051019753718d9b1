# streambank worker image (used by docker-compose.yml; the broker is the apache/kafka image).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BANK_HOME=/data/bank

WORKDIR /app
COPY pyproject.toml README.md* ./
COPY streams ./streams
COPY schemas ./schemas
COPY kafka ./kafka
# Editable: the codec reads schemas/ next to the package.
RUN pip install -e . && mkdir -p /data/bank

EXPOSE 6066
CMD ["bank", "worker"]
