"""Chat page: provider and model, generation settings, documents, chats, the message feed."""

from __future__ import annotations

import streamlit as st

from providers import GenerationParams
from storage import Chat, NotFoundError
from ui.components import render_message, upload_panel
from ui.conversation import (
    INPUT,
    answer_again,
    failed_answer,
    queue_question,
    take_turn,
    wait_for_previous_answer,
)
from ui.markup import literal
from ui.resources import get_library, get_providers
from ui.state import DEFAULTS, current_chat, load_chat_settings, select_chat

library = get_library()
providers = get_providers()
chats = library.chats
wait_for_previous_answer()
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
if "provider_default_applied" not in st.session_state:
    # RAG_PROVIDER picks the provider a new session starts with.
    st.session_state["provider_default_applied"] = True
    if library.settings.default_provider in providers:
        st.session_state["provider"] = library.settings.default_provider

# -- sidebar: chats -------------------------------------------------------------------------
sb = st.sidebar
sb.header("Чаты")
all_chats = chats.list_all()
chat = current_chat(library, all_chats)
if sb.button("Новый чат", icon=":material/add:", width="stretch"):
    select_chat(None)
    st.rerun()
if all_chats:
    ids = [c.id for c in all_chats]
    titles = {c.id: c.title for c in all_chats}
    picked = sb.radio(
        "История чатов",
        ids,
        index=ids.index(chat.id) if chat and chat.id in ids else None,
        format_func=lambda i: literal(titles[i]),  # radio options render Markdown
        label_visibility="collapsed",
    )
    if picked and (chat is None or picked != chat.id):
        select_chat(picked)
        load_chat_settings(chats.get(picked))
        st.rerun()
if chat is not None:
    with sb.expander("Переименовать или удалить чат"):
        new_title = st.text_input("Название", value=chat.title, max_chars=120)
        cols = st.columns(2)
        if cols[0].button("Сохранить", width="stretch") and new_title.strip():
            chats.update(chat.id, title=new_title.strip())
            st.rerun()
        if cols[1].button("Удалить чат", type="primary", width="stretch"):
            chats.delete(chat.id)
            select_chat(None)
            st.rerun()

# -- sidebar: documents ---------------------------------------------------------------------
sb.header("Документы")
upload_panel(library, sb, key="chat_uploads")
use_documents = sb.toggle("Использовать документы в ответах", key="use_documents")
ready = library.docs.totals()
sb.caption(f"В базе: {ready['documents']} док., {ready['chunks']} фрагм.")

# -- sidebar: model and generation ----------------------------------------------------------
sb.header("Модель")
names = list(providers)
if st.session_state["provider"] not in names:
    st.session_state["provider"] = "offline"


def _provider_label(name: str) -> str:
    p = providers[name]
    return p.label if p.status().available else f"{p.label} — не настроен"


provider_name = sb.selectbox("Провайдер", names, format_func=_provider_label, key="provider")
provider = providers[provider_name]
status = provider.status()
if not status.available:
    sb.warning(f"{provider.label}: {status.reason}.")
models = provider.models()
model_ids = [m.id for m in models]
if st.session_state.get("model") not in model_ids:
    st.session_state["model"] = model_ids[0]
labels = {m.id: m.label for m in models}
model = sb.selectbox("Модель", model_ids, format_func=lambda i: labels[i], key="model")
with sb.expander("Параметры генерации"):
    temperature = st.slider("Температура", 0.0, 1.0, step=0.05, key="temperature")
    max_tokens = st.slider("Макс. длина ответа (токены)", 64, 4096, step=64, key="max_tokens")
    system_prompt = st.text_area(
        "Системный промпт (дополнение)",
        key="system_prompt",
        placeholder="Например: отвечай кратко, как юрист",
        max_chars=4000,
    )

# -- main: the feed -------------------------------------------------------------------------
st.title("Чат с документами")
if chat is not None:
    messages = chats.messages(chat.id)
    head = st.columns([4, 1])
    head[0].caption(literal(chat.title))
    if messages and head[1].button("Очистить чат", width="stretch"):
        st.session_state["confirm_clear"] = chat.id
    if st.session_state.get("confirm_clear") == chat.id:
        st.warning("Удалить все сообщения этого чата? Это нельзя отменить.")
        c1, c2 = st.columns(2)
        if c1.button("Да, очистить", type="primary", width="stretch"):
            chats.clear_messages(chat.id)
            st.session_state.pop("confirm_clear", None)
            st.rerun()
        if c2.button("Отмена", width="stretch"):
            st.session_state.pop("confirm_clear", None)
            st.rerun()
    retrying = st.session_state.pop("retry_answer", None)
    if retrying and messages and messages[-1].id == retrying:
        chats.delete_message(retrying)
        messages = messages[:-1]
        if messages and messages[-1].role == "user":
            answer_again(messages[-1])
    for msg in messages:
        render_message(msg)
    failed = failed_answer(messages)
    if failed is not None and st.button("Повторить", icon=":material/refresh:"):
        st.session_state["retry_answer"] = failed.id
        st.rerun()
else:
    st.info(
        "Загрузите документы в боковой панели и задайте вопрос. "
        "Ответ будет опираться на ваши файлы и ссылаться на источники."
    )

st.chat_input("Задайте вопрос по документам…", key=INPUT, on_submit=queue_question)


def chat_for_question() -> Chat:
    """The open chat with the sidebar's settings saved into it, created for a first question."""
    sidebar = {
        "provider": provider_name,
        "model": model,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "system_prompt": system_prompt,
        "use_documents": use_documents,
    }
    if chat is not None:
        try:
            return chats.update(chat.id, **sidebar)
        except NotFoundError:  # deleted from another session meanwhile
            pass
    created = chats.create(**sidebar)
    select_chat(created.id)
    return created


params = GenerationParams(temperature=temperature, max_tokens=max_tokens)
if take_turn(library, chat, chat_for_question, provider, model, params, use_documents, system_prompt):
    # Re-render from the database: the chat list, its title and the clear button catch up.
    st.rerun()
