"""Indexing jobs: one job body; the in-process queue (local) and the PostgreSQL one (shared)."""
