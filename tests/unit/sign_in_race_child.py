"""A second replica for the race tests of tests/unit/test_sign_in_races.py.

Run as ``python -m tests.unit.sign_in_race_child FOLDER INDEX``. It opens nothing until told:
for each round r the test writes ``FOLDER/go-r.json`` (the database URL, an action and its
arguments); every child waits for that file, so all of them start the action together, then
writes its outcome to ``FOLDER/res-r-INDEX.json``. A ``stop`` action ends it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rag import RagError
from rag.identity.access import AccessControl
from rag.identity.auth import AuthService
from settings import Settings
from storage import make_engine
from storage.models import Role
from storage.teams import CollectionRepo, UserRepo

PASSWORD = "correct horse battery"


def _services(url: str, cache: dict[str, AuthService]) -> AuthService:
    if url not in cache:
        engine = make_engine(url)
        users = UserRepo(engine)
        cache[url] = AuthService(users, AccessControl(users, CollectionRepo(engine)), "race-secret")
    return cache[url]


def act(auth: AuthService, action: str, args: list[str]) -> dict[str, Any]:
    """Do one action as this replica; the outcome as JSON-able data (never raises)."""
    try:
        if action == "first_admin":
            return {"ok": auth.create_first_admin(args[0], PASSWORD).id}
        if action == "demote":
            actor, target = auth.users.by_name(args[0]), auth.users.by_name(args[1])
            assert actor is not None and target is not None
            return {"ok": auth.set_role(actor, target.id, Role.MEMBER).id}
        if action == "fail":
            auth.sign_in(args[0], "wrong password", *args[1:])
            return {"ok": "signed in"}
        if action == "bootstrap":
            settings = Settings(_env_file=None, RAG_ADMIN_USER=args[0], RAG_ADMIN_PASSWORD=PASSWORD)  # type: ignore[call-arg]
            admin = auth.bootstrap(settings)
            return {"ok": admin.id if admin else None}
        if action == "local_user":
            return {"ok": auth.access.local_user().id}
        if action == "personal":
            user = auth.users.by_name(args[0])
            assert user is not None
            return {"ok": auth.access.personal_collection(user).id}
        return {"error": f"unknown action {action}"}
    except RagError as exc:  # a refusal the service meant
        return {"refused": str(exc)}
    except Exception as exc:  # anything else is what the tests look for
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}


def main(folder: Path, index: int) -> None:
    """Serve rounds until told to stop."""
    cache: dict[str, AuthService] = {}
    (folder / f"ready-{index}").touch()
    r = 0
    while True:
        order = folder / f"go-{r}.json"
        while not order.exists():
            time.sleep(0.005)
        spec = json.loads(order.read_text(encoding="utf-8"))
        if spec["action"] == "stop":
            return
        # Open the database before the round starts, so both replicas act at the same moment.
        auth = _services(spec["url"], cache)
        (folder / f"armed-{r}-{index}").touch()
        while not (folder / f"fire-{r}").exists():
            time.sleep(0.001)
        result = act(auth, spec["action"], spec["args"][index])
        tmp = folder / f".res-{r}-{index}"
        tmp.write_text(json.dumps(result), encoding="utf-8")
        tmp.rename(folder / f"res-{r}-{index}.json")
        r += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
