"""OIDC accounts: keyed on the issuer and ``sub``; e-mail trusted only when verified; approval.

The rules on claims (verified addresses, allow-lists, the admin list) live in ``rag.identity.oidc``; this
module applies them to the users table. ``AuthService`` mixes it in: it needs the service's
users, access rules and admin lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from rag.identity.access import AccessControl, Forbidden
from rag.identity.oidc import ADDRESS_TAKEN, NOT_PENDING, PENDING, OidcIdentity, OidcPolicy
from rag.identity.throttle import SignInRefused
from storage import NotFoundError
from storage.models import Role, User
from storage.teams import AlreadyExists, UserRepo

log = logging.getLogger(__name__)

ACCOUNT_DISABLED = "Учётная запись отключена: обратитесь к администратору."


class OidcAccounts:
    """The account an ID token names, and the admin's approval of waiting accounts."""

    users: UserRepo
    access: AccessControl
    _admin_lock: threading.RLock

    def oidc_user(self, claims: Mapping[str, object], policy: OidcPolicy) -> User:
        """The account of the person an ID token's claims (``st.user``) name; refused in Russian otherwise.

        The account is keyed on the issuer and ``sub``. The address counts only when the provider
        verified it: for the admin list, the allow-lists, and binding an account made before
        identities were stored (rag.identity.oidc). A first sign-in creates an active member, or under
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
