"""The admin page's view of the indexing queue: who is using it, and a cancel button for any job.

The queue service decides: ``overview`` and ``cancel`` check that the acting user is an admin
(or, for cancel, the job's uploader), whichever page asks.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from rag import RagError
from storage.models import User
from ui.markup import literal, plain
from ui.resources import get_indexing_queue, get_library

STATE_RU = {"queued": "в очереди", "running": "выполняется", "done": "готово"}


def queue_section(me: User) -> None:
    """Render who has jobs in the indexing queue, each job with its progress and a cancel button."""
    queue = get_indexing_queue()
    st.subheader("Очередь индексации")
    st.caption(
        "Загрузки разных пользователей обрабатываются по очереди, поэтому большой файл одного "
        "не задерживает остальных дольше чем на один шаг."
    )
    jobs = queue.overview(me)
    if not jobs:
        st.caption("Очередь пуста.")
        return
    names = {u.id: u.name for u in get_library().users.list_all()}

    def who(user_id: str | None) -> str:
        return names.get(user_id or "", "неизвестный пользователь")

    users = sorted({j.user_id for j in jobs}, key=lambda u: who(u).casefold())
    st.dataframe(
        pd.DataFrame(
            {
                "Пользователь": [plain(who(u)) for u in users],
                "Выполняется": [sum(j.user_id == u and j.state == "running" for j in jobs) for u in users],
                "В очереди": [sum(j.user_id == u and j.state == "queued" for j in jobs) for u in users],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    for job in jobs:
        cols = st.columns([5, 1])
        label = f"{who(job.user_id)} · {job.filename} · {STATE_RU.get(job.state, job.state)}"
        cols[0].progress(min(1.0, job.fraction), text=literal(label))
        if cols[1].button("Отменить", key=f"admin_cancel_{job.id}", icon=":material/cancel:"):
            try:
                queue.cancel(job.id, me)
            except RagError as exc:
                st.error(literal(str(exc)))
            else:
                st.toast(literal(f"Задача «{job.filename}» будет отменена на ближайшем шаге."))
