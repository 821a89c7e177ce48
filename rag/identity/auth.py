"""Sign-in and accounts: the first admin, passwords, sessions, user management and OIDC users.

The pages and the CLI call this module; the rules on what a signed-in user may read and write
stay in ``rag.identity.access``. Every refusal a user should read is a ``SignInRefused`` (or
``Forbidden``) whose message is Russian and shown as is.

- RAG_AUTH=password: the first visitor of a fresh install creates the admin
  (``create_first_admin``), or the operator sets RAG_ADMIN_USER/RAG_ADMIN_PASSWORD
  (``bootstrap``); then everyone signs in by name and password (``sign_in``).
- RAG_AUTH=oidc: the identity provider names the person (issuer and ``sub``) and may vouch for
  their e-mail (``oidc_user``, rules in ``rag.identity.oidc``); RAG_OIDC_* decide who gets an account.
- Either way the session is a signed token (``issue_token``/``user_from_token``) that carries
  the user's session version: a password change, a reset, a sign-out and disabling raise it,
  which ends every session made before, cookies and open tabs alike (``session_user``).
- Locks that guard accounts are database locks (``storage.teams.exclusive``), so replicas
  never create two first admins nor demote the last one between them. Failed sign-ins count
  per name and per client address, in the database, by one statement each; at most
  RAG_MAX_PASSWORD_CHECKS argon2 checks run at once per process.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from functools import cache

from itsdangerous import BadSignature, URLSafeTimedSerializer

from rag.identity.access import AccessControl, Forbidden
from rag.identity.oidc_accounts import ACCOUNT_DISABLED, OidcAccounts
from rag.identity.passwords import check_password_rules, hash_password
from rag.identity.session_keys import session_secret
from rag.identity.throttle import DEFAULT_PASSWORD_CHECKS, SignInRefused, SignInThrottle
from settings import Settings
from storage import NotFoundError
from storage.models import Role, User
from storage.teams import AlreadyExists, LastAdmin, UserRepo, normalise_name

__all__ = ["AuthService", "SignInRefused", "auth_service", "session_secret"]

log = logging.getLogger(__name__)

TOKEN_SALT = "rag-session"
TOKEN_MAX_AGE_S = 14 * 24 * 3600

BAD_CREDENTIALS = "Неверное имя пользователя или пароль."
WRONG_CURRENT_PASSWORD = "Текущий пароль неверен."
LAST_ADMIN = (
    "Нельзя {what} последнего администратора, который может войти: сначала назначьте "
    "администратором кого-то ещё."
)


@cache
def _dummy_hash() -> str:
    """A hash no password matches, verified for unknown names so their timing equals a real check."""
    # Same hasher and parameters as real hashes: the verification costs the same time.
    return hash_password(secrets.token_urlsafe(32))


def _fingerprint(password_hash: str | None) -> str:
    """A short digest of the stored hash: a token carrying it dies when the password changes."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


class AuthService(OidcAccounts):
    """Accounts and sessions over the users table."""

    def __init__(
        self,
        users: UserRepo,
        access: AccessControl,
        secret: str,
        clock: Callable[[], float] = time.time,
        mode: str = "password",
        max_password_checks: int = DEFAULT_PASSWORD_CHECKS,
    ) -> None:
        self.users = users
        self.access = access
        self._serializer = URLSafeTimedSerializer(secret, salt=TOKEN_SALT)
        # RAG_AUTH: decides which admins can sign in, and so which count as the last one.
        self.mode = mode
        self.throttle = SignInThrottle(users, clock, max_password_checks)
        # Checks such as «is this the last admin» and the change they guard must not interleave
        # within a process (two admins demoting each other at once would leave none).
        self._admin_lock = threading.RLock()

    # -- the first admin ----------------------------------------------------------------------

    def needs_first_admin(self) -> bool:
        """Whether the library never had an admin with a password (a fresh RAG_AUTH=password install).

        A library that had one and lost it (disabled, demoted) is the operator's to repair
        through the CLI: the first visitor never gets to create an admin there.
        """
        if self.users.had_admin():
            return False
        return not any(u.password_hash for u in self.users.admins())

    def create_first_admin(self, name: str, password: str) -> User:
        """Create the first admin of a fresh install; they receive every row from before teams."""
        key = normalise_name(name)
        if not key:
            raise SignInRefused("Укажите имя пользователя.")
        password_hash = self._new_hash(password)
        try:
            # The check and the insert run under a database lock: two replicas, one admin.
            admin = self.users.create_first_admin(key, password_hash)
        except AlreadyExists:
            raise SignInRefused(f"Имя «{key}» уже занято.") from None
        if admin is None:
            raise Forbidden("Администратор уже создан: войдите под своей учётной записью.")
        # Chats, documents and collections of a release without users become the admin's.
        self.users.claim_unowned(admin.id)
        log.info("first admin %r created", admin.name)
        return admin

    def bootstrap(self, settings: Settings) -> User | None:
        """Ensure the admin of RAG_ADMIN_USER/RAG_ADMIN_PASSWORD exists; None when they are not set."""
        if not settings.admin_user or settings.admin_password is None:
            return None
        password = settings.admin_password.get_secret_value()
        if not normalise_name(settings.admin_user) or not password:
            return None
        with self._admin_lock:
            admin = self.users.by_name(settings.admin_user)
            created = False
            if admin is None:
                try:
                    password_hash = self._new_hash(password)
                except SignInRefused as exc:
                    raise SignInRefused(f"RAG_ADMIN_PASSWORD: {exc}") from exc
                # Every replica of a fresh deployment starts with the same settings: the first
                # one makes the admin, the others take that row (one statement, no error).
                admin, created = self.users.get_or_create(
                    settings.admin_user, role=Role.ADMIN, password_hash=password_hash
                )
                if created:
                    log.info("admin %r created from RAG_ADMIN_USER", admin.name)
            if not created:
                # The operator's configuration says this person is an admin; the password they
                # may have changed since is theirs, so a restart leaves it alone.
                changes: dict[str, object] = {}
                if admin.role != Role.ADMIN or not admin.active:
                    changes.update(role=Role.ADMIN, active=True)
                if not admin.password_hash:  # e.g. the no-sign-in «local» user: give them a way in
                    changes["password_hash"] = hash_password(password)
                if changes:
                    admin = self.users.update(admin.id, **changes)
            self.users.claim_unowned(admin.id)
        return admin

    # -- signing in ---------------------------------------------------------------------------

    def sign_in(self, name: str, password: str, address: str | None = None) -> User:
        """The user with this name and password; SignInRefused, saying nothing of which was wrong.

        ``address`` is the client's (None when unknown, e.g. on loopback): failures count per
        address as well, so one password tried against many names is slowed down too.
        """
        key = normalise_name(name)
        with self.throttle.lock_of(key):
            self.throttle.refuse_while_held(key, address)
            user = self.users.by_name(key) if key else None
            stored = user.password_hash if user is not None else None
            # An unknown name (or one without a password) is checked against a dummy hash, so
            # the time taken does not tell which names exist.
            matched = self.throttle.verify(stored or _dummy_hash(), password) and stored is not None
            if user is not None and matched and user.active:
                self.throttle.forget_name_failures(key)
                return user
            # A disabled user with the right password counts as a failure too: anything else
            # would tell a guesser the password was right.
            self.throttle.count_failure(key, address)
        raise SignInRefused(BAD_CREDENTIALS)

    # -- sessions -----------------------------------------------------------------------------

    def issue_token(self, user: User) -> str:
        """A signed session token for the user (for a cookie)."""
        payload = {"uid": user.id, "pw": _fingerprint(user.password_hash), "sv": user.session_version}
        return self._serializer.dumps(payload)

    def user_from_token(self, token: str, max_age_s: int = TOKEN_MAX_AGE_S) -> User | None:
        """The active user a token was issued to; None when it is forged, expired or outdated."""
        try:
            payload = self._serializer.loads(token, max_age=max_age_s)
        except BadSignature:  # SignatureExpired included
            return None
        if not isinstance(payload, dict):
            return None
        user_id, fingerprint = payload.get("uid"), payload.get("pw")
        if not isinstance(user_id, str) or not isinstance(fingerprint, str):
            return None
        try:
            user = self.users.get(user_id)
        except NotFoundError:
            return None
        if not user.active:
            return None
        # A changed or reset password ends every session made with the old one.
        if not hmac.compare_digest(fingerprint, _fingerprint(user.password_hash)):
            return None
        # So does a sign-out or disabling (tokens from before session versions count as 0).
        if payload.get("sv", 0) != user.session_version:
            return None
        return user

    def session_user(self, user_id: str, version: int) -> User | None:
        """The user of an open session begun at this session version; None once it has ended.

        The page asks on every rerun, so a tab left open ends as soon as its user changes their
        password, signs out elsewhere, is reset or is disabled.
        """
        try:
            user = self.users.get(user_id)
        except NotFoundError:
            return None
        if not user.active or user.session_version != version:
            return None
        return user

    def sign_out(self, user: User) -> None:
        """End every session of the user, this one included: the server forgets their tokens."""
        try:
            self.users.end_sessions(user.id)
        except NotFoundError:
            return

    # -- one's own account --------------------------------------------------------------------

    def change_password(self, user: User, old: str, new: str, address: str | None = None) -> User:
        """Change one's own password (the current one is asked for); old sessions end, issue a new token.

        Wrong current passwords count like failed sign-ins of the name (and the address).
        """
        current = self.users.get(user.id)
        if not current.active:
            raise Forbidden(ACCOUNT_DISABLED)
        reason = check_password_rules(new)
        if reason is not None:
            raise SignInRefused(reason)
        with self.throttle.lock_of(current.name):
            self.throttle.refuse_while_held(current.name, address)
            if not self.throttle.verify(current.password_hash, old):
                self.throttle.count_failure(current.name, address)
                raise SignInRefused(WRONG_CURRENT_PASSWORD)
            self.throttle.forget_name_failures(current.name)
        return self.users.end_sessions(current.id, password_hash=self._new_hash(new))

    # -- management by an admin ---------------------------------------------------------------

    def add_user(self, actor: User, name: str, role: Role, password: str) -> User:
        """Create a user with a password (admins only)."""
        self.access.require_admin(actor)
        user = self._create(name, role, password)
        log.info("user %r (%s) added by %r", user.name, user.role, actor.name)
        return user

    def reset_password(self, actor: User, user_id: str, new: str) -> User:
        """Set a user's password (admins only); their sessions end."""
        self.access.require_admin(actor)
        target = self.users.get(user_id)
        return self.users.end_sessions(target.id, password_hash=self._new_hash(new))

    def set_active(self, actor: User, user_id: str, active: bool) -> User:
        """Enable or disable a user (admins only); the last admin who can sign in cannot be disabled."""
        self.access.require_admin(actor)
        return self.operator_set_active(user_id, active)

    def set_role(self, actor: User, user_id: str, role: Role) -> User:
        """Change a user's role (admins only); the last admin who can sign in cannot be demoted."""
        self.access.require_admin(actor)
        return self.operator_set_role(user_id, role)

    def operator_set_active(self, user_id: str, active: bool) -> User:
        """``set_active`` for the operator (the CLI, who holds the data directory): no acting user."""
        target = self.users.get(user_id)
        if target.active == active:
            return target
        if active:
            # Enabling an account that waits for approval (rag.identity.oidc) approves it.
            return self.users.update(target.id, active=True, pending=False)
        try:
            # Disabling ends the user's sessions as well.
            return self.users.update_keeping_admin(
                target.id, self.can_sign_in, {"active": False}, end_sessions=True
            )
        except LastAdmin:
            raise Forbidden(LAST_ADMIN.format(what="отключить")) from None

    def operator_set_role(self, user_id: str, role: Role) -> User:
        """``set_role`` for the operator (the CLI): no acting user."""
        role = Role(role)
        target = self.users.get(user_id)
        if target.role == role:
            return target
        try:
            return self.users.update_keeping_admin(target.id, self.can_sign_in, {"role": role})
        except LastAdmin:
            raise Forbidden(LAST_ADMIN.format(what="лишить прав")) from None

    def can_sign_in(self, user: User) -> bool:
        """Whether the user is an active admin who can sign in under this mode (RAG_AUTH).

        A password-less ``local`` admin of RAG_AUTH=none does not count under ``password``.
        """
        if user.role != Role.ADMIN or not user.active:
            return False
        if self.mode == "password":
            return bool(user.password_hash)
        if self.mode == "oidc":
            return bool(user.oidc_subject or user.email)
        return True

    # -- helpers ------------------------------------------------------------------------------

    def _create(self, name: str, role: Role, password: str) -> User:
        """A new user with a checked password; SignInRefused for an empty or taken name."""
        key = normalise_name(name)
        if not key:
            raise SignInRefused("Укажите имя пользователя.")
        password_hash = self._new_hash(password)
        try:
            return self.users.create(key, role=Role(role), password_hash=password_hash)
        except AlreadyExists:
            raise SignInRefused(f"Имя «{key}» уже занято.") from None

    def _new_hash(self, password: str) -> str:
        """The hash of an acceptable password; SignInRefused with the reason otherwise."""
        reason = check_password_rules(password)
        if reason is not None:
            raise SignInRefused(reason)
        with self.throttle.check_slot():  # hashing costs argon2's memory as a check does
            return hash_password(password)


def auth_service(users: UserRepo, access: AccessControl, settings: Settings) -> AuthService:
    """The process's AuthService for these settings (its mode, its key, its limit of checks at once)."""
    return AuthService(
        users,
        access,
        session_secret(settings),
        mode=settings.auth_mode,
        max_password_checks=settings.max_password_checks,
    )
