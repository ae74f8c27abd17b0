# voisnap in a container: one process, one port, its data on a volume.
#   docker build -t voisnap . && docker run -p 8080:8080 -v voisnap-data:/data voisnap
# BASE selects the base image (a Python 3.11 on Debian): the public one by default,
# or one built locally where the registry cannot be reached.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

WORKDIR /app
COPY pyproject.toml README.md ./
COPY voisnap ./voisnap
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data voisnap \
    && mkdir -p /data && chown voisnap /data

# Not root: the server needs no privilege (it listens above 1024).
USER 10001
EXPOSE 8080
VOLUME ["/data"]
# The JWT secret: set VOISNAP_JWT_SECRET, or let voisnap create one in /data on first start.
ENV VOISNAP_HOST=0.0.0.0 VOISNAP_PORT=8080 VOISNAP_DATA_DIR=/data PYTHONUNBUFFERED=1
# Liveness through the same port clients use (the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# voisnap is PID 1 (the exec form): SIGTERM reaches it and it shuts down gracefully.
STOPSIGNAL SIGTERM
CMD ["voisnap", "serve"]
