"""Sign-in and accounts: the first admin, passwords, sessions, user management and OIDC users.

The pages and the CLI call this module; the rules on what a signed-in user may read and write
stay in ``rag.access``. Every refusal a user should read is a ``SignInRefused`` (or
``Forbidden``) whose message is Russian and shown as is.

- RAG_AUTH=password: the first visitor of a fresh install creates the admin
  (``create_first_admin``), or the operator sets RAG_ADMIN_USER/RAG_ADMIN_PASSWORD
  (``bootstrap``); then everyone signs in by name and password (``sign_in``).
- RAG_AUTH=oidc: the identity provider names the person (issuer and ``sub``) and may vouch for
  their e-mail (``oidc_user``, rules in ``rag.oidc``); RAG_OIDC_* decide who gets an account.
- Either way the session is a signed token (``issue_token``/``user_from_token``) that carries
  the user's session version: a password change, a reset, a sign-out and disabling raise it,
  which ends every session made before, cookies and open tabs alike (``session_user``).
- Locks that guard accounts are database locks (``storage.teams.exclusive``), so replicas
  never create two first admins nor demote the last one between them. Failed sign-ins count
  per name and per client address, in the database, by one statement each; at most
  RAG_MAX_PASSWORD_CHECKS argon2 checks run at once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from rag import RagError
from rag.access import AccessControl, Forbidden
from rag.oidc import ADDRESS_TAKEN, NOT_PENDING, PENDING, OidcIdentity, OidcPolicy
from rag.passwords import check_password_rules, hash_password, verify_password
from settings import Settings
from storage import NotFoundError
from storage.models import Role, User
from storage.teams import AlreadyExists, LastAdmin, UserRepo, normalise_name

log = logging.getLogger(__name__)

SECRET_FILE = "secret_key"
TOKEN_SALT = "rag-session"
TOKEN_MAX_AGE_S = 14 * 24 * 3600
# Failed sign-ins of one name that cost no wait; each later failure doubles the wait.
FREE_FAILURES = 3
MAX_WAIT_S = 300.0
# One client address (behind a NAT or a proxy, many people) gets more free failures; its count
# starts afresh after this long without a failure.
ADDRESS_FREE_FAILURES = 10
ADDRESS_FRESH_AFTER_S = 900.0
# argon2 holds 64 MiB per check: this many at once per process unless RAG_MAX_PASSWORD_CHECKS.
DEFAULT_PASSWORD_CHECKS = 4
# A sign-in that waits longer than this for a free check slot is told to try again.
CHECK_SLOT_WAIT_S = 60.0
# Above this many remembered names, those whose wait is long over are forgotten, so a flood
# of made-up names cannot grow the table without bound.
THROTTLE_PRUNE_AT = 10_000

BAD_CREDENTIALS = "Неверное имя пользователя или пароль."
WRONG_CURRENT_PASSWORD = "Текущий пароль неверен."
ACCOUNT_DISABLED = "Учётная запись отключена: обратитесь к администратору."
BUSY = "Сервер сейчас проверяет много паролей. Повторите вход через минуту."
LAST_ADMIN = (
    "Нельзя {what} последнего администратора, который может войти: сначала назначьте "
    "администратором кого-то ещё."
)


class SignInRefused(RagError):
    """A sign-in or an account change was refused; the message is shown to the user as is."""


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


@cache
def _dummy_hash() -> str:
    """A hash no password matches, verified for unknown names so their timing equals a real check."""
    # Same hasher and parameters as real hashes: the verification costs the same time.
    return hash_password(secrets.token_urlsafe(32))


def _fingerprint(password_hash: str | None) -> str:
    """A short digest of the stored hash: a token carrying it dies when the password changes."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


class AuthService:
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
        self._clock = clock
        # RAG_AUTH: decides which admins can sign in, and so which count as the last one.
        self.mode = mode
        self._check_slots = threading.BoundedSemaphore(max_password_checks)
        # Failures are counted in the database, so every app replica (and a restart) sees them;
        # the clock is wall time for the same reason. Attempts on one name run one after
        # another within a process, so parallel guesses cannot slip past the wait.
        self._name_locks: dict[str, threading.Lock] = {}
        self._name_locks_lock = threading.Lock()
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
        with self._lock_of(key):
            self._refuse_while_held(key, address)
            user = self.users.by_name(key) if key else None
            stored = user.password_hash if user is not None else None
            # An unknown name (or one without a password) is checked against a dummy hash, so
            # the time taken does not tell which names exist.
            matched = self._verify(stored or _dummy_hash(), password) and stored is not None
            if user is not None and matched and user.active:
                self._forget_name_failures(key)
                return user
            # A disabled user with the right password counts as a failure too: anything else
            # would tell a guesser the password was right.
            self._count_failure(key, address)
        raise SignInRefused(BAD_CREDENTIALS)

    def _refuse_while_held(self, key: str, address: str | None) -> None:
        """SignInRefused with the wait when the name or the address is being made to wait."""
        now = self._clock()
        until = self.users.failures(key).until
        if address:
            until = max(until, self.users.address_failures(address).until)
        if now < until:
            wait = max(1, math.ceil(until - now))
            raise SignInRefused(f"Слишком много неудачных попыток. Повторите через {wait} с.")

    def _count_failure(self, key: str, address: str | None) -> None:
        """Count a failure of the name and of the address (atomically in SQL), and set their waits."""
        failures = self.users.count_failure(key)
        if failures >= FREE_FAILURES:
            self.users.hold(key, self._clock() + min(MAX_WAIT_S, 2.0 ** (failures - FREE_FAILURES)))
            log.warning("sign-in of %r failed %d times in a row", key, failures)
        if address:
            now = self._clock()
            count = self.users.count_address_failure(address, now, now - ADDRESS_FRESH_AFTER_S)
            if count >= ADDRESS_FREE_FAILURES:
                wait = min(MAX_WAIT_S, 2.0 ** (count - ADDRESS_FREE_FAILURES))
                self.users.hold_address(address, now + wait)
                log.warning("%d failed sign-ins from %s", count, address)

    def _forget_name_failures(self, key: str) -> None:
        if self.users.failures(key).failures:
            self.users.set_failures(key, 0, 0.0)

    def _verify(self, stored: str | None, password: str) -> bool:
        """verify_password within this process's limit of argon2 checks at once."""
        with self._check_slot():
            return verify_password(stored, password)

    @contextlib.contextmanager
    def _check_slot(self) -> Iterator[None]:
        # Each argon2 check holds 64 MiB: parallel sign-ins wait here instead of exhausting memory.
        if not self._check_slots.acquire(timeout=CHECK_SLOT_WAIT_S):
            raise SignInRefused(BUSY)
        try:
            yield
        finally:
            self._check_slots.release()

    def _lock_of(self, key: str) -> threading.Lock:
        """This process's lock for attempts on a normalised name."""
        with self._name_locks_lock:
            if len(self._name_locks) >= THROTTLE_PRUNE_AT:
                # Names not being tried right now; their records stay in the database, and
                # those whose wait has long ended go from there too.
                for name in [k for k, lock in self._name_locks.items() if not lock.locked()]:
                    del self._name_locks[name]
                self.users.forget_failures(before=self._clock() - MAX_WAIT_S)
            return self._name_locks.setdefault(key, threading.Lock())

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
        with self._lock_of(current.name):
            self._refuse_while_held(current.name, address)
            if not self._verify(current.password_hash, old):
                self._count_failure(current.name, address)
                raise SignInRefused(WRONG_CURRENT_PASSWORD)
            self._forget_name_failures(current.name)
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
            # Enabling an account that waits for approval (rag.oidc) approves it.
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

    # -- OIDC ---------------------------------------------------------------------------------

    def oidc_user(self, claims: Mapping[str, object], policy: OidcPolicy) -> User:
        """The account of the person an ID token's claims (``st.user``) name; refused in Russian otherwise.

        The account is keyed on the issuer and ``sub``. The address counts only when the provider
        verified it: for the admin list, the allow-lists, and binding an account made before
        identities were stored (rag.oidc). A first sign-in creates an active member, or under
        RAG_OIDC_NEW_USERS=pending an inactive account that an admin approves.
        """
        identity = OidcIdentity.from_claims(claims)
        if isinstance(identity, str):
            raise SignInRefused(identity)
        reason = policy.refusal(identity)
        if reason is not None:
            raise SignInRefused(reason)
        admin = policy.is_admin(identity)
        with self._admin_lock:
            user = self.users.by_oidc(identity.issuer, identity.subject) or self._bind_earlier(identity)
            created = user is None
            if user is None:
                user = self._create_oidc(identity, policy, admin)
            changes: dict[str, object] = {}
            if user.pending and not user.active and admin:
                changes.update(active=True, pending=False)  # the operator named them: no wait
            elif not user.active:
                if user.pending:
                    raise SignInRefused(PENDING.format(address=identity.address))
                raise Forbidden(ACCOUNT_DISABLED)
            if identity.verified and user.email != identity.address:
                changes["email"] = identity.address  # a label only: the account is the identity
            if admin and user.role != Role.ADMIN:
                changes["role"] = Role.ADMIN
            if changes:
                user = self.users.update(user.id, **changes)
            became_admin = user.role == Role.ADMIN and (created or "role" in changes)
            if became_admin and self.users.admins()[0].id == user.id:
                # The first admin of the install receives the rows from before teams.
                self.users.claim_unowned(user.id)
        return user

    def _bind_earlier(self, identity: OidcIdentity) -> User | None:
        """The account made before identities were stored that this verified address owns, now bound.

        Only accounts without an identity qualify (an earlier release's OIDC users, or accounts
        an admin made under the address); one bound to another identity is never taken over.
        """
        if not identity.verified:
            return None
        for user in self.users.list_all():  # a team's users are few
            if user.oidc_subject is not None:
                continue
            if identity.key not in (user.name, (user.email or "").strip().lower()):
                continue
            if self.users.bind_oidc(user.id, identity.issuer, identity.subject):
                log.info("user %r bound to their OIDC identity", user.name)
                return self.users.get(user.id)
        return None

    def _create_oidc(self, identity: OidcIdentity, policy: OidcPolicy, admin: bool) -> User:
        """The account of a first sign-in; SignInRefused when its verified address is another's."""
        active = admin or policy.new_users == "member"
        name = identity.key if identity.verified else identity.unverified_name()
        try:
            user = self.users.create(
                name,
                role=Role.ADMIN if admin else Role.MEMBER,
                email=identity.address if identity.verified else None,
                oidc_issuer=identity.issuer,
                oidc_subject=identity.subject,
                active=active,
                pending=not active,
            )
        except AlreadyExists:
            # A concurrent first sign-in of the same person made it a moment ago; otherwise the
            # name, and so the verified address, belongs to another identity's account.
            user_or_none = self.users.by_oidc(identity.issuer, identity.subject)
            if user_or_none is None:
                raise SignInRefused(ADDRESS_TAKEN.format(address=identity.address)) from None
            return user_or_none
        log.info("user %r created at first OIDC sign-in%s", user.name, "" if active else " (pending)")
        return user

    def pending_users(self, actor: User) -> list[User]:
        """Accounts that wait for an admin's approval, oldest first (admins only)."""
        self._require_current_admin(actor)
        waiting = [u for u in self.users.list_all() if u.pending and not u.active]
        return sorted(waiting, key=lambda u: u.created_at)

    def approve_user(self, actor: User, user_id: str) -> User:
        """Let a waiting account in (admins only)."""
        return self._settle(actor, user_id, active=True)

    def reject_user(self, actor: User, user_id: str) -> User:
        """Turn a waiting account away: it stays, disabled, so the same sign-in is refused (admins only)."""
        return self._settle(actor, user_id, active=False)

    def _settle(self, actor: User, user_id: str, active: bool) -> User:
        admin = self._require_current_admin(actor)
        target = self.users.get(user_id)
        if not target.pending or target.active:
            raise Forbidden(NOT_PENDING.format(name=target.name))
        settled = self.users.update(target.id, active=active, pending=False)
        log.info("user %r %s by %r", settled.name, "approved" if active else "rejected", admin.name)
        return settled

    def _require_current_admin(self, actor: User) -> User:
        """The actor as stored now if an active admin, else Forbidden (a stale object proves nothing)."""
        try:
            current = self.users.get(actor.id)
        except NotFoundError:
            raise Forbidden("Это действие доступно только администратору.") from None
        self.access.require_admin(current)
        return current

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
        with self._check_slot():  # hashing costs argon2's memory as a check does
            return hash_password(password)


def client_address(remote: str | None, forwarded_for: str | None, trusted_proxies: str) -> str | None:
    """The client address failed sign-ins count against.

    ``remote`` is the connection's address (None on loopback, as Streamlit reports it). When it
    is one of ``trusted_proxies`` (RAG_TRUSTED_PROXIES: comma-separated addresses or networks),
    the address is the last one in X-Forwarded-For that no trusted proxy added; otherwise the
    header is ignored, since anyone can send it.
    """
    networks = []
    for item in trusted_proxies.split(","):
        with contextlib.suppress(ValueError):
            if item.strip():
                networks.append(ipaddress.ip_network(item.strip(), strict=False))

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    if not trusted(remote or "127.0.0.1"):
        return remote
    for hop in reversed((forwarded_for or "").split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a malformed hop: nothing to its left can be told apart from a forgery
        if not trusted(hop):
            return hop
    return remote


def auth_service(users: UserRepo, access: AccessControl, settings: Settings) -> AuthService:
    """The process's AuthService for these settings (its mode, its key, its limit of checks at once)."""
    return AuthService(
        users,
        access,
        session_secret(settings),
        mode=settings.auth_mode,
        max_password_checks=settings.max_password_checks,
    )
