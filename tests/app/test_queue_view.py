"""The admin page's queue view: who is using the indexing queue, and a cancel for any job."""

from __future__ import annotations

import time
from pathlib import Path

from tests.app.conftest import make_app

SENTENCE = "Арендатор обязан своевременно вносить арендную плату и содержать помещение в порядке. "


def test_the_admin_sees_each_members_jobs_and_cancels_one(data_dir: Path) -> None:
    at = make_app("app_pages/admin.py")
    at.run()
    assert not at.exception
    assert any("Очередь пуста" in c.value for c in at.caption)
    from ui.resources import get_indexing_queue, get_library  # the page's own, cached in this process

    library, queue = get_library(), get_indexing_queue()
    alice = library.users.create("alice")
    first = queue.submit("big.txt", (SENTENCE * 400).encode(), user=alice)
    second = queue.submit("next.txt", "Второй файл Алисы о складе.".encode(), user=alice)
    at.run()
    assert not at.exception
    (table,) = [
        df.value
        for df in at.dataframe
        if "Пользователь" in df.value.columns and "В очереди" in df.value.columns
    ]
    row = table[table["Пользователь"] == "alice"].iloc[0]
    assert row["Выполняется"] + row["В очереди"] == 2
    cancel = [b for b in at.button if b.key == f"admin_cancel_{second.id}"]
    assert cancel, "no cancel button for Alice's queued file"
    cancel[0].click().run()
    assert not at.exception
    queue.cancel(first.id)  # the local admin, as on the page
    deadline = time.monotonic() + 600
    while queue.pending() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = queue.get(second.id)
    assert done is not None and done.failed and "отменена" in done.message
