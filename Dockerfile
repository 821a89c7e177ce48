# The app for a VM (Yandex Cloud Compute, Cloud.ru): Streamlit on 8501, data in the /data volume.
# Every step is a script under deploy/, which CI runs on the host as well (tests/unit/test_docker.py).
#
#   docker build -t multimodal-rag-ru .
#   docker run -d -p 8501:8501 -v rag-data:/data -e RAG_AUTH=password ... multimodal-rag-ru
#
# It listens on 0.0.0.0, so it refuses to start without sign-in (RAG_AUTH=none, the default)
# unless RAG_ALLOW_OPEN_ACCESS=1 says that something in front of it already signs people in.
#
# The Russian Trusted Root CA (GigaChat) is added when deploy/certs holds it (see its README).
# The scale-out set (PostgreSQL, Chroma server, two replicas, a worker, haproxy): deploy/compose.yaml.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RAG_DATA_DIR=/data \
    PORT=8501

WORKDIR /app

# System packages (Tesseract with Russian and English), then the optional CA: rarely changed layers first.
COPY packages.txt ./
COPY deploy/install-system.sh deploy/
RUN deploy/install-system.sh --clean
COPY deploy/add-russian-ca.sh deploy/
COPY deploy/certs/ deploy/certs/
RUN deploy/add-russian-ca.sh deploy/certs

# Python dependencies (requirements.txt, no torch) into /opt/venv.
COPY requirements.txt ./
COPY deploy/install-python.sh deploy/
RUN deploy/install-python.sh /opt/venv

COPY deploy/add-user.sh deploy/
RUN deploy/add-user.sh rag /data /chroma

# The app itself (.dockerignore keeps out .venv, data, secrets and tests' node_modules).
COPY . .

USER rag
VOLUME /data
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["deploy/healthcheck.sh"]
CMD ["deploy/start-app.sh"]
