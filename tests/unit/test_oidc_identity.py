"""OIDC accounts: keyed on the issuer and ``sub``, ``email_verified`` honoured, allow-lists, pending accounts.

The service is driven with the claims of an ID token, as ``st.user`` hands them over after
``st.login()``; tests/e2e/test_oidc.py runs the same rules through a real provider and browser.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rag import RagError
from rag.identity.access import AccessControl, Forbidden
from rag.identity.auth import AuthService, SignInRefused
from rag.identity.oidc import OidcPolicy
from rag.library import Library
from settings import Settings
from storage import make_engine
from storage.models import Role, User
from storage.teams import CollectionRepo, UserRepo

ISSUER = "https://id.example.com"
OTHER_ISSUER = "https://login.other.example"
PASSWORD = "correct horse battery"
OPEN = OidcPolicy()
BOSS = OidcPolicy(admin_emails=frozenset({"boss@example.com"}))


def claims(sub: str, email: str, verified: Any = True, iss: str = ISSUER, **extra: Any) -> dict[str, Any]:
    """The claims of an ID token as st.user shows them."""
    return {"iss": iss, "sub": sub, "email": email, "email_verified": verified, "name": sub, **extra}


@pytest.fixture
def auth(library: Library) -> AuthService:
    return AuthService(library.users, library.access, "test-secret")


@pytest.fixture
def boss(auth: AuthService) -> User:
    return auth.oidc_user(claims("sub-boss", "boss@example.com"), BOSS)


def _refused(auth: AuthService, token: dict[str, Any], policy: OidcPolicy = OPEN) -> str:
    with pytest.raises(SignInRefused) as exc:
        auth.oidc_user(token, policy)
    return str(exc.value)


# -- keyed on issuer and subject ------------------------------------------------------------------


def test_an_account_is_keyed_on_issuer_and_subject(auth: AuthService) -> None:
    user = auth.oidc_user(claims("sub-ivan", "Ivan.Petrov@Example.com"), OPEN)
    assert (user.name, user.email, user.role, user.active) == (
        "ivan.petrov@example.com",
        "Ivan.Petrov@Example.com",
        Role.MEMBER,
        True,
    )
    assert (user.oidc_issuer, user.oidc_subject) == (ISSUER, "sub-ivan")
    assert user.password_hash is None
    # The provider changed the address: still the same person, the same account.
    renamed = auth.oidc_user(claims("sub-ivan", "i.petrov@example.com"), OPEN)
    assert renamed.id == user.id
    assert renamed.email == "i.petrov@example.com"
    assert len(auth.users.list_all()) == 1


def test_a_verified_address_of_another_identity_is_refused(auth: AuthService) -> None:
    bob = auth.oidc_user(claims("sub-bob", "bob@example.com"), OPEN)
    # Another account at the same provider, and the same subject at another provider.
    for other in (
        claims("sub-twin", "bob@example.com"),
        claims("sub-bob", "Bob@example.com", iss=OTHER_ISSUER),
    ):
        message = _refused(auth, other)
        assert "уже принадлежит другой учётной записи" in message
    assert [u.id for u in auth.users.list_all()] == [bob.id]
    assert (auth.users.get(bob.id).oidc_issuer, auth.users.get(bob.id).oidc_subject) == (ISSUER, "sub-bob")


def test_identity_claims_are_required(auth: AuthService) -> None:
    assert "идентификатор" in _refused(
        auth, {"iss": ISSUER, "email": "a@example.com", "email_verified": True}
    )
    assert "идентификатор" in _refused(auth, claims("", "a@example.com"))
    assert "идентификатор" in _refused(auth, claims("sub-a", "a@example.com", iss=""))
    assert "почты" in _refused(auth, claims("sub-a", "  "))
    assert "почты" in _refused(auth, claims("sub-a", "not-an-address"))
    assert auth.users.list_all() == []


# -- email_verified -------------------------------------------------------------------------------


def test_an_unverified_address_never_matches_the_admin_list(auth: AuthService, library: Library) -> None:
    old_chat = library.chats.create(title="старый")
    impostor = auth.oidc_user(claims("sub-evil", "Boss@example.com", verified=False), BOSS)
    assert impostor.role == Role.MEMBER
    # It does not hold the address either, so the real owner still gets it.
    assert impostor.name != "boss@example.com" and impostor.email is None
    assert library.chats.get(old_chat.id).owner_id is None
    boss = auth.oidc_user(claims("sub-boss", "boss@example.com"), BOSS)
    assert boss.id != impostor.id and boss.role == Role.ADMIN and boss.name == "boss@example.com"
    # A missing claim is not a «yes» either; a string «true» (some providers send one) is.
    assert auth.oidc_user(claims("sub-x", "x@example.com", verified=None), OPEN).email is None
    assert auth.oidc_user(claims("sub-y", "y@example.com", verified="false"), OPEN).email is None
    assert auth.oidc_user(claims("sub-z", "z@example.com", verified="true"), OPEN).email == "z@example.com"
    no_claim = {"iss": ISSUER, "sub": "sub-w", "email": "w@example.com"}
    assert auth.oidc_user(no_claim, OPEN).name != "w@example.com"


def test_an_unverified_address_never_takes_over_a_password_user(auth: AuthService, boss: User) -> None:
    ann = auth.add_user(boss, "ann@example.com", Role.ADMIN, PASSWORD)
    other = auth.oidc_user(claims("sub-mallory", "ann@example.com", verified=False), BOSS)
    assert other.id != ann.id and other.role == Role.MEMBER
    assert auth.users.get(ann.id).oidc_subject is None
    # The provider vouching for the address is what binds an account made before.
    bound = auth.oidc_user(claims("sub-ann", "ann@example.com"), BOSS)
    assert bound.id == ann.id and (bound.oidc_issuer, bound.oidc_subject) == (ISSUER, "sub-ann")


def test_an_unverified_address_never_takes_over_an_oidc_user(auth: AuthService) -> None:
    bob = auth.oidc_user(claims("sub-bob", "bob@example.com"), OPEN)
    other = auth.oidc_user(claims("sub-twin", "bob@example.com", verified=False), OPEN)
    assert other.id != bob.id
    # Each identity keeps finding its own account.
    assert auth.oidc_user(claims("sub-twin", "bob@example.com", verified=False), OPEN).id == other.id
    assert auth.oidc_user(claims("sub-bob", "bob@example.com"), OPEN).id == bob.id
    assert len(auth.users.list_all()) == 2


def test_an_account_made_before_identities_is_bound_on_a_verified_sign_in(
    auth: AuthService, library: Library
) -> None:
    # What the previous release made at a first OIDC sign-in: the e-mail as the name, no identity.
    legacy = library.users.create("ann@example.com", email="Ann@Example.com")
    chat = library.chats.create(title="мой", owner_id=legacy.id)
    unverified = auth.oidc_user(claims("sub-ann", "ann@example.com", verified=False), OPEN)
    assert unverified.id != legacy.id
    assert auth.users.get(legacy.id).oidc_subject is None

    ann = auth.oidc_user(claims("sub-ann2", "ANN@example.com"), OPEN)
    assert ann.id == legacy.id
    assert (ann.oidc_issuer, ann.oidc_subject) == (ISSUER, "sub-ann2")
    assert library.chats.get(chat.id).owner_id == ann.id
    # Bound now: another identity with the address no longer reaches it.
    assert "другой учётной записи" in _refused(auth, claims("sub-ann3", "ann@example.com"))
    assert auth.oidc_user(claims("sub-ann2", "ann@example.com"), OPEN).id == legacy.id


# -- who may get an account -----------------------------------------------------------------------


def test_allowed_domains_and_addresses_decide_who_gets_an_account(auth: AuthService) -> None:
    policy = OidcPolicy(
        allowed_domains=frozenset({"example.com"}),
        allowed_emails=frozenset({"guest@partner.org"}),
        admin_emails=frozenset({"root@ops.example.net"}),
    )
    for outsider in ("eve@evil.org", "eve@sub.example.com", "eve@example.com.evil.org", "x@partner.org"):
        message = _refused(auth, claims(f"sub-{outsider}", outsider), policy)
        assert f"Для адреса {outsider} вход в это приложение не разрешён" in message
        assert "администратор" in message
    # An unverified address in the domain proves nothing.
    message = _refused(auth, claims("sub-fake", "ceo@example.com", verified=False), policy)
    assert "не подтверждён" in message
    assert auth.users.list_all() == []

    assert auth.oidc_user(claims("sub-a", "a@EXAMPLE.com"), policy).role == Role.MEMBER
    assert auth.oidc_user(claims("sub-g", "Guest@partner.org"), policy).role == Role.MEMBER
    # The operator named the admin: that address is allowed too.
    assert auth.oidc_user(claims("sub-r", "root@ops.example.net"), policy).role == Role.ADMIN
    assert len(auth.users.list_all()) == 3


def test_an_account_outside_a_narrowed_list_is_refused(auth: AuthService) -> None:
    eve = auth.oidc_user(claims("sub-eve", "eve@evil.org"), OPEN)
    narrowed = OidcPolicy(allowed_domains=frozenset({"example.com"}))
    assert "не разрешён" in _refused(auth, claims("sub-eve", "eve@evil.org"), narrowed)
    assert auth.users.get(eve.id).active  # nothing changed: widening the list lets her in again
    assert auth.oidc_user(claims("sub-eve", "eve@evil.org"), OPEN).id == eve.id


def test_pending_accounts_wait_for_an_admin(auth: AuthService) -> None:
    member_policy = OidcPolicy(admin_emails=frozenset({"boss@example.com"}))
    carl = auth.oidc_user(claims("sub-carl", "carl@example.com"), member_policy)
    pending = OidcPolicy(admin_emails=frozenset({"boss@example.com"}), new_users="pending")
    # The listed admin is never left waiting, even as the first sign-in of all.
    boss = auth.oidc_user(claims("sub-boss", "boss@example.com"), pending)
    assert boss.active and boss.role == Role.ADMIN

    for _ in range(2):
        message = _refused(auth, claims("sub-ann", "ann@example.com"), pending)
        assert "ждёт одобрения администратора" in message
    [ann] = [u for u in auth.users.list_all() if u.email == "ann@example.com"]
    assert (ann.active, ann.pending, ann.role) == (False, True, Role.MEMBER)
    assert auth.user_from_token(auth.issue_token(ann)) is None
    assert [u.id for u in auth.pending_users(boss)] == [ann.id]

    # A member can neither see nor approve the waiting accounts.
    with pytest.raises(Forbidden):
        auth.pending_users(carl)
    with pytest.raises(Forbidden):
        auth.approve_user(carl, ann.id)
    assert not auth.users.get(ann.id).active

    approved = auth.approve_user(boss, ann.id)
    assert (approved.active, approved.pending) == (True, False)
    assert auth.oidc_user(claims("sub-ann", "ann@example.com"), pending).id == ann.id
    assert auth.pending_users(boss) == []
    # An already settled account cannot be approved again (e.g. one an admin disabled).
    auth.set_active(boss, carl.id, False)
    with pytest.raises(RagError, match="не ждёт одобрения"):
        auth.approve_user(boss, carl.id)
    assert not auth.users.get(carl.id).active


def test_a_rejected_account_stays_out(auth: AuthService, boss: User) -> None:
    pending = OidcPolicy(new_users="pending")
    _refused(auth, claims("sub-dan", "dan@example.com"), pending)
    [dan] = auth.pending_users(boss)
    with pytest.raises(Forbidden):
        auth.reject_user(auth.oidc_user(claims("sub-m", "m@example.com"), OPEN), dan.id)
    rejected = auth.reject_user(boss, dan.id)
    assert (rejected.active, rejected.pending) == (False, False)
    assert auth.pending_users(boss) == []
    with pytest.raises(Forbidden, match="Учётная запись отключена"):
        auth.oidc_user(claims("sub-dan", "dan@example.com"), pending)


# -- what the previous release did, kept ------------------------------------------------------------


def test_a_listed_admin_is_created_admin_and_claims_old_rows(library: Library, auth: AuthService) -> None:
    old_chat = library.chats.create(title="старый")
    policy = OidcPolicy.from_settings(Settings(_env_file=None, RAG_ADMIN_EMAILS=" BOSS@example.com ,"))
    boss = auth.oidc_user(claims("sub-boss", "boss@example.com"), policy)
    assert boss.role == Role.ADMIN
    assert library.chats.get(old_chat.id).owner_id == boss.id


def test_a_member_added_to_the_list_is_promoted_and_never_demoted(auth: AuthService) -> None:
    member = auth.oidc_user(claims("sub-ann", "ann@example.com"), BOSS)
    assert member.role == Role.MEMBER
    listed = OidcPolicy(admin_emails=frozenset({"ann@example.com"}))
    # Only with the address verified.
    assert auth.oidc_user(claims("sub-ann", "ann@example.com", verified=False), listed).role == Role.MEMBER
    promoted = auth.oidc_user(claims("sub-ann", "ann@example.com"), listed)
    assert promoted.id == member.id and promoted.role == Role.ADMIN
    # Leaving the list later does not demote: the admin may have been made one on the page.
    assert auth.oidc_user(claims("sub-ann", "ann@example.com"), OPEN).role == Role.ADMIN


def test_a_disabled_user_is_refused(auth: AuthService, boss: User) -> None:
    ann = auth.oidc_user(claims("sub-ann", "ann@example.com"), OPEN)
    auth.set_active(boss, ann.id, False)
    with pytest.raises(Forbidden, match="Учётная запись отключена"):
        auth.oidc_user(
            claims("sub-ann", "Ann@example.com"), OidcPolicy(admin_emails=frozenset({"ann@example.com"}))
        )
    assert auth.users.get(ann.id).role == Role.MEMBER


def test_policy_from_settings() -> None:
    settings = Settings(
        _env_file=None,
        RAG_ADMIN_EMAILS="Boss@Example.com, ",
        RAG_OIDC_ALLOWED_DOMAINS=" Example.com, @Corp.RU ,,",
        RAG_OIDC_ALLOWED_EMAILS="Guest@Partner.org",
        RAG_OIDC_NEW_USERS="pending",
    )
    assert OidcPolicy.from_settings(settings) == OidcPolicy(
        admin_emails=frozenset({"boss@example.com"}),
        allowed_domains=frozenset({"example.com", "corp.ru"}),
        allowed_emails=frozenset({"guest@partner.org"}),
        new_users="pending",
    )
    assert OidcPolicy.from_settings(Settings(_env_file=None)) == OPEN
    with pytest.raises(ValueError):
        Settings(_env_file=None, RAG_OIDC_NEW_USERS="everyone")


def test_enabling_a_waiting_account_in_the_user_list_settles_it(auth: AuthService, boss: User) -> None:
    """«Включить» in the user list is an approval too: disabled later, the account is not «waiting»."""
    pending = OidcPolicy(new_users="pending")
    _refused(auth, claims("sub-eli", "eli@example.com"), pending)
    [eli] = auth.pending_users(boss)
    auth.set_active(boss, eli.id, True)
    assert auth.pending_users(boss) == []
    auth.set_active(boss, eli.id, False)
    assert auth.pending_users(boss) == []
    with pytest.raises(Forbidden, match="Учётная запись отключена"):
        auth.oidc_user(claims("sub-eli", "eli@example.com"), pending)


# -- two replicas at once -------------------------------------------------------------------------

RACE_ROUNDS = 8


def _replica(library: Library) -> AuthService:
    """Another app replica over the same database: its own engine, its own process-local locks."""
    engine = make_engine(library.settings.resolved_database_url)
    users = UserRepo(engine)
    return AuthService(users, AccessControl(users, CollectionRepo(engine)), "test-secret")


def _together(sign_ins: list[tuple[AuthService, dict[str, Any]]]) -> list[User | str]:
    """Each replica signs its token in, in threads released at once; each user, or the refusal."""
    results: list[User | str] = ["" for _ in sign_ins]
    start = threading.Barrier(len(sign_ins))

    def run(i: int) -> None:
        replica, token = sign_ins[i]
        start.wait()
        try:
            results[i] = replica.oidc_user(token, OPEN)
        except RagError as exc:
            results[i] = str(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sign_ins))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_replicas_signing_in_at_once(library: Library) -> None:
    a, b = _replica(library), _replica(library)
    for r in range(RACE_ROUNDS):
        # The same person's first sign-in on both replicas: one account.
        same = claims(f"sub-{r}", f"user{r}@example.com")
        first, second = _together([(a, same), (b, same)])
        assert isinstance(first, User) and isinstance(second, User), (first, second)
        assert first.id == second.id
        # Two people with one verified address, each on a replica: one account, one refusal.
        shared = f"shared{r}@example.com"
        results = _together([(a, claims(f"sub-{r}-x", shared)), (b, claims(f"sub-{r}-y", shared))])
        assert sorted(type(x).__name__ for x in results) == ["User", "str"], results
        assert any("уже принадлежит другой учётной записи" in x for x in results if isinstance(x, str))
        # Two people racing to bind one account made before identities: one binds it.
        old = f"old{r}@example.com"
        legacy = library.users.create(old, email=old)
        results = _together([(a, claims(f"sub-{r}-p", old)), (b, claims(f"sub-{r}-q", old))])
        assert [x.id for x in results if isinstance(x, User)] == [legacy.id], results
        assert library.users.get(legacy.id).oidc_subject in {f"sub-{r}-p", f"sub-{r}-q"}
    names = [u.name for u in library.users.list_all()]
    assert len(names) == len(set(names)) == 3 * RACE_ROUNDS
