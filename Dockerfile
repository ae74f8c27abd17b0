# voisnap in a container: one process, one port.
#   docker build -t voisnap . && docker run -p 8080:8080 -v voisnap-data:/data voisnap
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY voisnap ./voisnap
RUN pip install --no-cache-dir . && useradd --system --home /data voisnap && mkdir -p /data \
    && chown voisnap /data

USER voisnap
EXPOSE 8080
# The JWT secret: set VOISNAP_JWT_SECRET, or let voisnap create one in /data on first start.
ENV VOISNAP_HOST=0.0.0.0 VOISNAP_PORT=8080 VOISNAP_DATA_DIR=/data
STOPSIGNAL SIGTERM
CMD ["voisnap", "serve"]
