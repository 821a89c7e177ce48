"""Assistants page: saved setups of a model and its search, personal or published by an admin."""

from __future__ import annotations

import streamlit as st

from rag import RagError
from storage import NotFoundError
from ui.auth import current_user
from ui.lab import METHOD_LABELS, assistant_form, get_lab
from ui.markup import literal
from ui.resources import get_library, get_providers

library = get_library()
lab = get_lab()
user = current_user()
admin = library.access.is_admin(user)
providers = get_providers()

st.title("Ассистенты")
st.caption(
    "Ассистент — сохранённая настройка: модель, параметры генерации, коллекции и способ поиска. "
    "Его можно выбрать в чате, сравнить с другими и проверить на тестовом наборе."
)

with st.expander("Новый ассистент", expanded=not lab.assistants.list_for(user)):
    made = assistant_form("new_assistant", user, can_publish=admin)
    if made is not None:
        spec, publish = made
        try:
            lab.assistants.create(spec, user, publish=publish)
            st.session_state["assistant_saved"] = spec.name
            st.rerun()
        except (RagError, NotFoundError) as exc:
            st.error(literal(str(exc)))
if saved := st.session_state.pop("assistant_saved", None):
    st.success(literal(f"Ассистент «{saved}» сохранён."))

for a in lab.assistants.list_for(user):
    mine = a.owner_id == user.id
    kind = "личный" if not a.published else "общий"
    provider = providers.get(a.provider)
    head = f"{a.name} · {provider.label if provider else a.provider} · {kind}"
    with st.expander(literal(head)):
        if a.description:
            st.markdown(literal(a.description))
        coll = "все доступные" if a.collection_ids is None else f"{len(a.collection_ids)} выбрано"
        st.caption(
            literal(
                f"Модель: {a.model or 'по умолчанию'} · температура {a.temperature:.2f} · "
                f"до {a.max_tokens} токенов · "
                f"поиск: {METHOD_LABELS.get(a.method, a.method)}, top {a.top_k} · "
                f"коллекции: {coll} · документы: {'да' if a.use_documents else 'нет'} · "
                f"переформулировка: {'да' if a.rewrite else 'нет'}"
            )
        )
        _kept, skipped = lab.assistants.readable_collections(a, user)
        if skipped:
            st.info(literal(lab.assistants.choice(a, user)[1] or ""), icon=":material/visibility_off:")
        if not (mine or admin):
            continue
        edited = assistant_form(f"edit_{a.id}", user, initial=a, can_publish=admin)
        if edited is not None:
            spec, publish = edited
            try:
                lab.assistants.update(a.id, spec, user)
                if admin and publish != a.published:
                    lab.assistants.publish(a.id, publish, user)
                st.rerun()
            except (RagError, NotFoundError) as exc:
                st.error(literal(str(exc)))
        if st.button("Удалить ассистента", key=f"delete_{a.id}"):
            lab.assistants.delete(a.id, user)
            st.rerun()
