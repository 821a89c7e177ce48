# PostgreSQL 15 with the RUM extension: the app's keyword search ranks from a RUM index where
# the extension is there (storage/keywords.py) and falls back to GIN + ts_rank without it. The
# official image installs PostgreSQL from the PGDG repository, whose postgresql-15-rum is built
# for the image's own server version. The app's user (POSTGRES_USER) is the cluster's superuser,
# so the app's migration creates the extension itself.
FROM postgres:15
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15-rum \
    && rm -rf /var/lib/apt/lists/*
