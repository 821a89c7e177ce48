"""Who an OpenID Connect sign-in is, and whether they may have an account: the rules, without storage.

An account is keyed on the issuer and the subject (``iss`` and ``sub`` of the ID token), which
the provider never gives to anyone else; the e-mail is only a label, and it counts for anything
(the admin list, the allow-lists, finding an account made before identities were stored) only
when the provider says it verified it (``email_verified``). ``rag.identity.auth.AuthService.oidc_user``
applies these rules to the users table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from settings import Settings

NewUsers = Literal["member", "pending"]

NO_IDENTITY = (
    "Провайдер входа не сообщил идентификатор пользователя (iss и sub): обратитесь к администратору."
)
NO_EMAIL = "Провайдер входа не передал адрес электронной почты: обратитесь к администратору."


def _words(value: str) -> frozenset[str]:
    """The non-empty, lowercased items of a comma-separated setting."""
    return frozenset(w.strip().lower() for w in value.split(",") if w.strip())


def _verified(value: object) -> bool:
    """Whether an ``email_verified`` claim says yes (some providers send the string «true»)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


@dataclass(frozen=True)
class OidcIdentity:
    """The person an ID token names, with the address the provider gave."""

    issuer: str
    subject: str
    address: str  # as the provider spelled it
    verified: bool

    @property
    def key(self) -> str:
        """The address as it is compared and stored as a name: trimmed, lowercased."""
        return self.address.lower()

    @property
    def domain(self) -> str:
        """The part after the last «@»."""
        return self.key.rpartition("@")[2]

    @classmethod
    def from_claims(cls, claims: Mapping[str, object]) -> OidcIdentity | str:
        """The identity in an ID token's claims, or the Russian reason it cannot be used."""
        issuer = str(claims.get("iss") or "").strip()
        subject = str(claims.get("sub") or "").strip()
        if not issuer or not subject:
            return NO_IDENTITY
        address = str(claims.get("email") or "").strip()
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            return NO_EMAIL
        return cls(issuer, subject, address, _verified(claims.get("email_verified")))

    def unverified_name(self) -> str:
        """The name of an account whose address is unverified: the address plus a mark of this identity.

        Such an account must not hold the bare address as its (unique) name: whoever later
        signs in with that address verified is its owner and gets it.
        """
        digest = hashlib.sha256(f"{self.issuer}\n{self.subject}".encode()).hexdigest()[:8]
        return f"{self.key}#{digest}"


@dataclass(frozen=True)
class OidcPolicy:
    """Who signs in as an admin, who may have an account, and what a first sign-in creates."""

    admin_emails: frozenset[str] = frozenset()
    # Both empty: anyone the provider signs in may have an account.
    allowed_domains: frozenset[str] = frozenset()
    allowed_emails: frozenset[str] = frozenset()
    new_users: NewUsers = "member"

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcPolicy:
        """RAG_ADMIN_EMAILS, RAG_OIDC_ALLOWED_DOMAINS, RAG_OIDC_ALLOWED_EMAILS, RAG_OIDC_NEW_USERS."""
        return cls(
            admin_emails=_words(settings.admin_emails),
            allowed_domains=frozenset(d.lstrip("@") for d in _words(settings.oidc_allowed_domains)),
            allowed_emails=_words(settings.oidc_allowed_emails),
            new_users=settings.oidc_new_users,
        )

    def is_admin(self, identity: OidcIdentity) -> bool:
        """Whether the identity signs in as an admin: a listed address the provider verified."""
        return identity.verified and identity.key in self.admin_emails

    def refusal(self, identity: OidcIdentity) -> str | None:
        """Why this identity may not have an account here (Russian), or None when it may."""
        if not self.allowed_domains and not self.allowed_emails:
            return None
        if not identity.verified:
            return (
                f"Адрес {identity.address} не подтверждён провайдером входа, а вход открыт только для "
                "разрешённых адресов. Подтвердите адрес у провайдера входа и войдите снова."
            )
        if (
            identity.domain in self.allowed_domains
            or identity.key in self.allowed_emails
            or identity.key in self.admin_emails
        ):
            return None
        return (
            f"Для адреса {identity.address} вход в это приложение не разрешён. Войдите под рабочим адресом "
            "или попросите администратора разрешить ваш адрес или домен."
        )


ADDRESS_TAKEN = (
    "Адрес {address} уже принадлежит другой учётной записи этого приложения. Войдите через ту учётную "
    "запись провайдера, под которой входили раньше, или обратитесь к администратору."
)
PENDING = (
    "Учётная запись {address} ждёт одобрения администратора. Войдите снова, когда администратор её одобрит."
)
NOT_PENDING = "Учётная запись «{name}» не ждёт одобрения: включите или отключите её в списке пользователей."
