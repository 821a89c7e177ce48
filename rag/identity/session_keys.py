"""The key that signs session tokens: RAG_SECRET_KEY, or one made once in the data directory."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from rag import RagError
from settings import Settings

SECRET_FILE = "secret_key"


def session_secret(settings: Settings) -> str:
    """The key that signs sessions: RAG_SECRET_KEY, else one made once and kept in the data directory."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        _create_secret_file(path)
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise RagError(f"Файл ключа сессий {path} пуст: удалите его или задайте RAG_SECRET_KEY.")
    return secret


def _create_secret_file(path: Path) -> None:
    """Write a fresh secret to ``path`` unless another process or thread got there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written in full to a private temporary file, then hard-linked into place: the link
    # fails when the file exists, so concurrent first calls keep one secret, and nobody ever
    # reads a half-written file (as they could with O_EXCL followed by a write).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{SECRET_FILE}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # mkstemp's mode already, but the key must never be readable by others
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
