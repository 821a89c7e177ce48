"""Password hashing for RAG_AUTH=password: argon2id through argon2-cffi, never the plain text."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
# The one upper limit: every password field (sign-in, change, reset, first run) takes this many
# characters, and the services and the CLI refuse more, so nobody sets a password they cannot type in.
MAX_PASSWORD_LENGTH = 256

# argon2-cffi's defaults (RFC 9106 low-memory profile): tuned by the library, not by us.
_HASHER = PasswordHasher()


def hash_password(plain: str) -> str:
    """The argon2id hash of a password, with its salt and parameters, to store."""
    return _HASHER.hash(plain)


def verify_password(hash: str | None, plain: str) -> bool:
    """Whether the password matches the stored hash; False (never an error) for a bad or missing hash."""
    if not hash:
        return False
    try:
        return _HASHER.verify(hash, plain)
    except (VerificationError, InvalidHashError, TypeError):
        return False


def check_password_rules(plain: str) -> str | None:
    """Why the password is not acceptable (in Russian), or None when it is."""
    if len(plain) < MIN_PASSWORD_LENGTH:
        return f"Пароль слишком короткий: нужно не меньше {MIN_PASSWORD_LENGTH} символов."
    if len(plain) > MAX_PASSWORD_LENGTH:
        return f"Пароль слишком длинный: можно не больше {MAX_PASSWORD_LENGTH} символов."
    return None
