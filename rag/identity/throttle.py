"""Sign-in throttling: failures counted per name and per client address, argon2 checks capped.

Failures are counted in the database by one statement each, so every app replica (and a
restart) sees them, on wall-clock time for the same reason. Attempts on one name run one after
another within a process, so parallel guesses cannot slip past the wait. Each argon2 check holds
64 MiB, so at most RAG_MAX_PASSWORD_CHECKS run at once per process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

from rag import RagError
from rag.identity.passwords import verify_password
from storage.teams import UserRepo

log = logging.getLogger(__name__)

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

BUSY = "Сервер сейчас проверяет много паролей. Повторите вход через минуту."


class SignInRefused(RagError):
    """A sign-in or an account change was refused; the message is shown to the user as is."""


class SignInThrottle:
    """Waits after failed sign-ins (per name and per address) and this process's slots for argon2."""

    def __init__(
        self,
        users: UserRepo,
        clock: Callable[[], float] = time.time,
        max_password_checks: int = DEFAULT_PASSWORD_CHECKS,
    ) -> None:
        self.users = users
        self._clock = clock
        self._check_slots = threading.BoundedSemaphore(max_password_checks)
        self._name_locks: dict[str, threading.Lock] = {}
        self._name_locks_lock = threading.Lock()

    def refuse_while_held(self, key: str, address: str | None) -> None:
        """SignInRefused with the wait when the name or the address is being made to wait."""
        now = self._clock()
        until = self.users.failures(key).until
        if address:
            until = max(until, self.users.address_failures(address).until)
        if now < until:
            wait = max(1, math.ceil(until - now))
            raise SignInRefused(f"Слишком много неудачных попыток. Повторите через {wait} с.")

    def count_failure(self, key: str, address: str | None) -> None:
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

    def forget_name_failures(self, key: str) -> None:
        """Forget the name's failures after a successful sign-in."""
        if self.users.failures(key).failures:
            self.users.set_failures(key, 0, 0.0)

    def verify(self, stored: str | None, password: str) -> bool:
        """verify_password within this process's limit of argon2 checks at once."""
        with self.check_slot():
            return verify_password(stored, password)

    @contextlib.contextmanager
    def check_slot(self) -> Iterator[None]:
        """Hold one of this process's argon2 slots; SignInRefused when none frees up in time."""
        # Each argon2 check holds 64 MiB: parallel sign-ins wait here instead of exhausting memory.
        if not self._check_slots.acquire(timeout=CHECK_SLOT_WAIT_S):
            raise SignInRefused(BUSY)
        try:
            yield
        finally:
            self._check_slots.release()

    def lock_of(self, key: str) -> threading.Lock:
        """This process's lock for attempts on a normalised name."""
        with self._name_locks_lock:
            if len(self._name_locks) >= THROTTLE_PRUNE_AT:
                # Names not being tried right now; their records stay in the database, and
                # those whose wait has long ended go from there too.
                for name in [k for k, lock in self._name_locks.items() if not lock.locked()]:
                    del self._name_locks[name]
                self.users.forget_failures(before=self._clock() - MAX_WAIT_S)
            return self._name_locks.setdefault(key, threading.Lock())


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
