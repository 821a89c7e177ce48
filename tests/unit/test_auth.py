"""Sign-in and accounts (rag.identity.auth) on a real library with real argon2 hashes."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import rag.identity.throttle
from rag.identity.access import Forbidden
from rag.identity.auth import AuthService, SignInRefused, session_secret
from rag.identity.passwords import MIN_PASSWORD_LENGTH
from rag.library import Library
from settings import Settings
from storage.models import Role, User

BAD = "Неверное имя пользователя или пароль."
PASSWORD = "correct horse battery"
OTHER = "another good password"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(library: Library, clock: FakeClock) -> AuthService:
    return AuthService(library.users, library.access, "test-secret", clock=clock)


@pytest.fixture
def admin(auth: AuthService) -> User:
    return auth.create_first_admin("Boss", PASSWORD)


@pytest.fixture
def alice(auth: AuthService, admin: User) -> User:
    return auth.add_user(admin, "Alice", Role.MEMBER, PASSWORD)


def _refused(auth: AuthService, name: str, password: str) -> str:
    with pytest.raises(SignInRefused) as exc:
        auth.sign_in(name, password)
    return str(exc.value)


def _wait_message(seconds: int) -> str:
    return f"Слишком много неудачных попыток. Повторите через {seconds} с."


# -- the first admin ----------------------------------------------------------------------------


def test_first_admin_claims_old_rows_and_is_created_once(library: Library, auth: AuthService) -> None:
    assert auth.needs_first_admin()
    # The passwordless admin of the no-sign-in mode cannot sign in, so it does not count.
    library.access.local_user()
    assert auth.needs_first_admin()

    with pytest.raises(SignInRefused, match=str(MIN_PASSWORD_LENGTH)):
        auth.create_first_admin("boss", "short")
    assert library.users.by_name("boss") is None

    admin = auth.create_first_admin("  Boss ", PASSWORD)
    assert (admin.name, admin.role, admin.active) == ("boss", Role.ADMIN, True)
    assert admin.password_hash and PASSWORD not in admin.password_hash
    assert not auth.needs_first_admin()
    with pytest.raises(Forbidden):
        auth.create_first_admin("intruder", PASSWORD)
    assert library.users.by_name("intruder") is None
    assert auth.sign_in("BOSS", PASSWORD).id == admin.id


def test_first_admin_receives_a_chat_without_owner(library: Library, auth: AuthService) -> None:
    old_chat = library.chats.create(title="Чат из прошлой версии")
    admin = auth.create_first_admin("boss", PASSWORD)
    assert library.chats.get(old_chat.id).owner_id == admin.id


def test_bootstrap_is_idempotent_and_keeps_a_changed_password(
    library: Library, auth: AuthService, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    assert auth.bootstrap(settings_factory(tmp_path)) is None
    assert auth.bootstrap(settings_factory(tmp_path, RAG_ADMIN_USER="root")) is None

    old_chat = library.chats.create(title="старый")
    configured = settings_factory(tmp_path, RAG_ADMIN_USER="Root", RAG_ADMIN_PASSWORD=PASSWORD)
    first = auth.bootstrap(configured)
    assert first is not None and (first.name, first.role) == ("root", Role.ADMIN)
    assert library.chats.get(old_chat.id).owner_id == first.id
    assert not auth.needs_first_admin()

    auth.change_password(first, PASSWORD, OTHER)
    again = auth.bootstrap(configured)
    assert again is not None and again.id == first.id
    assert [u.name for u in library.users.list_all()] == ["root"]
    # A restart does not undo the password the admin chose since.
    assert auth.sign_in("root", OTHER).id == first.id
    assert _refused(auth, "root", PASSWORD) == BAD


def test_bootstrap_refuses_a_weak_configured_password(
    auth: AuthService, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    with pytest.raises(SignInRefused, match="RAG_ADMIN_PASSWORD"):
        auth.bootstrap(settings_factory(tmp_path, RAG_ADMIN_USER="root", RAG_ADMIN_PASSWORD="short"))


# -- signing in ---------------------------------------------------------------------------------


def test_sign_in_ignores_case_and_spaces_of_the_name(auth: AuthService, alice: User) -> None:
    user = auth.sign_in("  ALICE ", PASSWORD)
    assert user.id == alice.id and user.name == "alice"


def test_sign_in_says_the_same_for_unknown_name_wrong_password_and_disabled_user(
    auth: AuthService, admin: User, alice: User
) -> None:
    assert _refused(auth, "nobody", PASSWORD) == BAD
    assert _refused(auth, "alice", "wrong password") == BAD
    auth.set_active(admin, alice.id, False)
    assert _refused(auth, "alice", PASSWORD) == BAD
    assert _refused(auth, "", PASSWORD) == BAD


def test_an_unknown_name_still_costs_one_argon2_verification(
    auth: AuthService, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []
    real = rag.identity.throttle.verify_password

    def spy(hash: str | None, plain: str) -> bool:
        seen.append(hash)
        return real(hash, plain)

    monkeypatch.setattr(rag.identity.throttle, "verify_password", spy)
    assert _refused(auth, "nobody", PASSWORD) == BAD
    assert len(seen) == 1 and seen[0] is not None and seen[0].startswith("$argon2id$")


def test_a_user_without_password_cannot_sign_in(library: Library, auth: AuthService) -> None:
    library.users.create("ssouser", email="sso@example.com")
    assert _refused(auth, "ssouser", "") == BAD
    assert _refused(auth, "ssouser", PASSWORD) == BAD


def _fail_until_capped(auth: AuthService, clock: FakeClock, name: str) -> None:
    """Three free failures, then waits of 1, 2, 4 … seconds, capped at 300."""
    for _ in range(3):
        assert _refused(auth, name, "wrong password") == BAD
    expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    for wait in expected:
        # Refused during the wait, even with the right password, and refusals do not add to it.
        assert _refused(auth, name, PASSWORD) == _wait_message(wait)
        clock.advance(wait - 0.5)
        assert _refused(auth, name, PASSWORD) == _wait_message(1)
        clock.advance(0.5)
        assert _refused(auth, name, "wrong password") == BAD


def test_throttling_doubles_the_wait_up_to_the_cap_and_resets_on_success(
    auth: AuthService, clock: FakeClock, alice: User
) -> None:
    _fail_until_capped(auth, clock, "alice")
    # Another name is not held up by alice's failures.
    assert auth.sign_in("boss", PASSWORD).role == Role.ADMIN
    # The throttle is kept per normalised name.
    assert _refused(auth, " ALICE", PASSWORD) == _wait_message(300)

    clock.advance(300)
    assert auth.sign_in("alice", PASSWORD).id == alice.id
    # After a success the free attempts are back.
    for _ in range(3):
        assert _refused(auth, "alice", "wrong password") == BAD
    assert _refused(auth, "alice", PASSWORD) == _wait_message(1)
    clock.advance(1)
    assert auth.sign_in("alice", PASSWORD).id == alice.id


def test_throttling_is_the_same_for_an_unknown_name(auth: AuthService, clock: FakeClock) -> None:
    _fail_until_capped(auth, clock, "ghost")
    assert _refused(auth, "Ghost", "anything") == _wait_message(300)


def test_every_replica_sees_the_same_failures(
    library: Library, auth: AuthService, clock: FakeClock, alice: User
) -> None:
    # Two app processes behind a load balancer: a guesser switching between them gains nothing.
    other = AuthService(library.users, library.access, "test-secret", clock=clock)
    for service in (auth, other, auth):
        assert _refused(service, "alice", "wrong password") == BAD
    assert _refused(other, "alice", PASSWORD) == _wait_message(1)
    assert _refused(auth, "alice", PASSWORD) == _wait_message(1)
    clock.advance(1)
    assert other.sign_in("alice", PASSWORD).id == alice.id
    # The success cleared the record for both.
    assert library.users.failures("alice").failures == 0


# -- sessions -----------------------------------------------------------------------------------


def test_token_round_trip_and_forgeries(library: Library, auth: AuthService, alice: User) -> None:
    token = auth.issue_token(alice)
    user = auth.user_from_token(token)
    assert user is not None and user.id == alice.id

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert auth.user_from_token(tampered) is None
    assert auth.user_from_token("not-a-token") is None
    assert auth.user_from_token("") is None
    other_key = AuthService(library.users, library.access, "another-secret")
    assert other_key.user_from_token(token) is None
    assert auth.user_from_token(auth.issue_token(User(name="ghost"))) is None


def test_a_password_change_or_reset_ends_old_sessions(auth: AuthService, admin: User, alice: User) -> None:
    before = auth.issue_token(alice)
    with pytest.raises(SignInRefused, match="Текущий пароль неверен"):
        auth.change_password(alice, "wrong password", OTHER)
    with pytest.raises(SignInRefused, match=str(MIN_PASSWORD_LENGTH)):
        auth.change_password(alice, PASSWORD, "short")
    assert auth.user_from_token(before) is not None

    changed = auth.change_password(alice, PASSWORD, OTHER)
    assert auth.user_from_token(before) is None
    after_change = auth.issue_token(changed)
    assert auth.user_from_token(after_change) is not None
    assert auth.sign_in("alice", OTHER).id == alice.id
    assert _refused(auth, "alice", PASSWORD) == BAD

    auth.reset_password(admin, alice.id, PASSWORD)
    assert auth.user_from_token(after_change) is None
    assert auth.sign_in("alice", PASSWORD).id == alice.id


def test_a_disabled_user_loses_the_session(auth: AuthService, admin: User, alice: User) -> None:
    token = auth.issue_token(alice)
    auth.set_active(admin, alice.id, False)
    assert auth.user_from_token(token) is None
    auth.set_active(admin, alice.id, True)
    # Enabling again does not bring back the sessions that disabling ended.
    assert auth.user_from_token(token) is None
    assert auth.user_from_token(auth.issue_token(auth.users.get(alice.id))) is not None


def test_an_expired_token_is_refused(auth: AuthService, alice: User) -> None:
    token = auth.issue_token(alice)
    assert auth.user_from_token(token, max_age_s=60) is not None
    time.sleep(1.1)
    assert auth.user_from_token(token, max_age_s=0) is None


# -- management ---------------------------------------------------------------------------------


def test_management_is_for_admins_only(auth: AuthService, admin: User, alice: User) -> None:
    for call in (
        lambda: auth.add_user(alice, "mallory", Role.ADMIN, PASSWORD),
        lambda: auth.reset_password(alice, admin.id, OTHER),
        lambda: auth.set_active(alice, admin.id, False),
        lambda: auth.set_role(alice, alice.id, Role.ADMIN),
    ):
        with pytest.raises(Forbidden, match="только администратору"):
            call()
    assert auth.sign_in("boss", PASSWORD).role == Role.ADMIN
    assert auth.users.get(alice.id).role == Role.MEMBER
    assert auth.users.by_name("mallory") is None


def test_add_user_checks_the_name_and_password(auth: AuthService, admin: User, alice: User) -> None:
    with pytest.raises(SignInRefused, match="занято"):
        auth.add_user(admin, "ALICE", Role.MEMBER, PASSWORD)
    with pytest.raises(SignInRefused, match=str(MIN_PASSWORD_LENGTH)):
        auth.add_user(admin, "bob", Role.MEMBER, "short")
    with pytest.raises(SignInRefused):
        auth.add_user(admin, "   ", Role.MEMBER, PASSWORD)
    with pytest.raises(SignInRefused, match=str(MIN_PASSWORD_LENGTH)):
        auth.reset_password(admin, alice.id, "short")


def test_the_last_admin_cannot_be_disabled_or_demoted(auth: AuthService, admin: User, alice: User) -> None:
    with pytest.raises(Forbidden, match="последнего администратора"):
        auth.set_active(admin, admin.id, False)
    with pytest.raises(Forbidden, match="последнего администратора"):
        auth.set_role(admin, admin.id, Role.MEMBER)
    assert auth.users.get(admin.id).role == Role.ADMIN and auth.users.get(admin.id).active

    # With a second admin either step is allowed.
    promoted = auth.set_role(admin, alice.id, Role.ADMIN)
    assert promoted.role == Role.ADMIN
    demoted = auth.set_role(admin, admin.id, Role.MEMBER)
    assert demoted.role == Role.MEMBER
    with pytest.raises(Forbidden, match="последнего администратора"):
        auth.set_active(promoted, alice.id, False)


# -- OIDC: tests/unit/test_oidc_identity.py ------------------------------------------------------


# -- the session secret -------------------------------------------------------------------------


def test_session_secret_is_made_once_and_private(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(tmp_path / "data")
    secret = session_secret(settings)
    path = tmp_path / "data" / "secret_key"
    assert len(secret) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert session_secret(settings) == secret
    assert session_secret(settings_factory(tmp_path / "data")) == secret
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]


def test_session_secret_prefers_the_configured_key(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(tmp_path / "data", RAG_SECRET_KEY="from-the-environment")
    assert session_secret(settings) == "from-the-environment"
    assert not (tmp_path / "data" / "secret_key").exists()


def test_concurrent_first_calls_end_with_one_secret(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(tmp_path / "data")
    results: list[str] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        results.append(session_secret(settings))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert (tmp_path / "data" / "secret_key").read_text(encoding="utf-8").strip() == results[0]


def test_new_secrets_are_hidden_by_without_secrets(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        tmp_path, RAG_SECRET_KEY="k" * 40, RAG_ADMIN_USER="root", RAG_ADMIN_PASSWORD=PASSWORD
    )
    assert "k" * 40 not in repr(settings) and PASSWORD not in repr(settings)
    bare = settings.without_secrets()
    assert bare.secret_key is None and bare.admin_password is None
    assert bare.admin_user == "root"


# -- issue 18: ways in --------------------------------------------------------------------------

ADDRESS = "203.0.113.7"
ADDRESS_FREE_FAILURES = 10


def test_the_first_admin_is_never_asked_for_again_once_there_was_one(
    library: Library, auth: AuthService, admin: User
) -> None:
    # Whatever took the admin away (SQL by hand, an older CLI), the library had one: repairing
    # that is the operator's job, never the first visitor's.
    library.users.update(admin.id, active=False)
    assert not auth.needs_first_admin()
    with pytest.raises(Forbidden):
        auth.create_first_admin("intruder", PASSWORD)
    library.users.update(admin.id, active=True, role=Role.MEMBER)
    assert not auth.needs_first_admin()
    assert library.users.by_name("intruder") is None


def test_a_passwordless_admin_does_not_count_as_another_admin(
    library: Library, auth: AuthService, admin: User
) -> None:
    library.access.local_user()  # the admin of an earlier RAG_AUTH=none: nobody can sign in as it
    with pytest.raises(Forbidden, match="последнего администратора"):
        auth.set_active(admin, admin.id, False)
    with pytest.raises(Forbidden, match="последнего администратора"):
        auth.set_role(admin, admin.id, Role.MEMBER)
    assert auth.users.get(admin.id).role == Role.ADMIN and auth.users.get(admin.id).active


def test_sign_out_ends_every_session_of_the_user(auth: AuthService, alice: User) -> None:
    laptop, phone = auth.issue_token(alice), auth.issue_token(alice)
    auth.sign_out(alice)
    assert auth.user_from_token(laptop) is None and auth.user_from_token(phone) is None
    assert auth.user_from_token(auth.issue_token(auth.users.get(alice.id))) is not None


def test_an_open_session_ends_at_its_next_check(auth: AuthService, admin: User, alice: User) -> None:
    # What the page checks on every rerun: the user and the session version it began with.
    for end in (
        lambda: auth.change_password(auth.users.get(alice.id), PASSWORD, OTHER),
        lambda: auth.reset_password(admin, alice.id, PASSWORD),
        lambda: auth.sign_out(auth.users.get(alice.id)),
        lambda: auth.set_active(admin, alice.id, False),
    ):
        version = auth.users.get(alice.id).session_version
        assert auth.session_user(alice.id, version) is not None
        end()
        assert auth.session_user(alice.id, version) is None
    assert auth.session_user("nobody", 0) is None


def test_change_password_is_throttled_like_sign_in(auth: AuthService, clock: FakeClock, alice: User) -> None:
    for _ in range(3):
        with pytest.raises(SignInRefused, match="Текущий пароль неверен"):
            auth.change_password(alice, "wrong password", OTHER)
    with pytest.raises(SignInRefused) as exc:
        auth.change_password(alice, PASSWORD, OTHER)
    assert str(exc.value) == _wait_message(1)
    # One count for both doors: a guess at the form is a guess at the sign-in too.
    assert _refused(auth, "alice", PASSWORD) == _wait_message(1)
    clock.advance(1)
    assert auth.change_password(alice, PASSWORD, OTHER).id == alice.id


def test_one_address_trying_many_names_is_slowed(auth: AuthService, clock: FakeClock, admin: User) -> None:
    for i in range(ADDRESS_FREE_FAILURES):
        with pytest.raises(SignInRefused, match="Неверное"):
            auth.sign_in(f"name{i}", "password-1", address=ADDRESS)
    with pytest.raises(SignInRefused) as exc:
        auth.sign_in("boss", PASSWORD, address=ADDRESS)
    assert str(exc.value) == _wait_message(1)
    # Someone at another address is not held up, nor is the name itself.
    assert auth.sign_in("boss", PASSWORD, address="198.51.100.1").id == admin.id
    clock.advance(1)
    assert auth.sign_in("boss", PASSWORD, address=ADDRESS).id == admin.id


def test_at_most_n_argon2_checks_run_at_once(library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = AuthService(library.users, library.access, "test-secret", max_password_checks=2)
    running, most = 0, 0
    count = threading.Lock()
    real = rag.identity.throttle.verify_password

    def counting(hash: str | None, plain: str) -> bool:
        nonlocal running, most
        with count:
            running += 1
            most = max(most, running)
        try:
            return real(hash, plain)
        finally:
            with count:
                running -= 1

    monkeypatch.setattr(rag.identity.throttle, "verify_password", counting)
    start = threading.Barrier(6)
    refusals: list[str] = []

    def attempt(i: int) -> None:
        start.wait()
        try:
            auth.sign_in(f"guest{i}", PASSWORD)
        except SignInRefused as exc:
            refusals.append(str(exc))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refusals == [BAD] * 6
    assert most <= 2


def test_one_password_length_limit_everywhere(library: Library, auth: AuthService, admin: User) -> None:
    alice = auth.add_user(admin, "alice", Role.MEMBER, "a" * 256)
    assert auth.sign_in("alice", "a" * 256).id == alice.id
    for call in (
        lambda: auth.change_password(alice, "a" * 256, "b" * 257),
        lambda: auth.reset_password(admin, alice.id, "b" * 300),
        lambda: auth.add_user(admin, "carol", Role.MEMBER, "c" * 257),
    ):
        with pytest.raises(SignInRefused, match="256"):
            call()
    assert library.users.by_name("carol") is None
    assert auth.sign_in("alice", "a" * 256).id == alice.id


def test_failures_count_against_the_client_behind_a_trusted_proxy() -> None:
    from rag.identity.throttle import client_address

    proxies = "10.0.0.0/8, 192.168.1.5"
    # Straight from the browser: its own address, whatever X-Forwarded-For it claims.
    assert client_address("203.0.113.7", "198.51.100.1", proxies) == "203.0.113.7"
    assert client_address("203.0.113.7", None, "") == "203.0.113.7"
    # Through haproxy (option forwardfor): the last address the trusted proxies did not add.
    assert client_address("10.0.0.3", "198.51.100.1", proxies) == "198.51.100.1"
    assert client_address("10.0.0.3", "6.6.6.6, 198.51.100.1, 192.168.1.5", proxies) == "198.51.100.1"
    # A proxy that is not trusted cannot choose the address failures are counted against.
    assert client_address("10.0.0.3", "198.51.100.1", "") == "10.0.0.3"
    # Loopback (Streamlit says None) trusted explicitly, and garbage in the header ignored.
    assert client_address(None, "198.51.100.1", "127.0.0.1") == "198.51.100.1"
    assert client_address(None, "198.51.100.1", "") is None
    assert client_address("10.0.0.3", "not-an-address", proxies) == "10.0.0.3"
