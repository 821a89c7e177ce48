"""Chat page: provider and model, generation settings, documents, chats, the message feed."""

from __future__ import annotations

import streamlit as st

from rag.answer.chat import MAX_TITLE_CHARS, NO_COLLECTIONS, TurnChoice, failed_answer
from storage.models import SEARCHABLE
from ui.auth import current_user
from ui.chat_export import export_buttons
from ui.chat_search import chat_search_box, focus_marker, scroll_to_focus
from ui.components import collection_labels, upload_panel
from ui.conversation import INPUT, answer_again, queue_question, take_turn, wait_for_previous_answer
from ui.feedback import rating_footer
from ui.lab import assistant_picker
from ui.markup import literal, plain
from ui.messages import render_message
from ui.resources import get_chat_service, get_library, get_providers
from ui.state import DEFAULTS, chat_labels, current_chat, load_chat_settings, select_chat

library = get_library()
providers = get_providers()
service = get_chat_service()
user = current_user()
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
all_chats = service.chats_of(user)
chat = current_chat(library, all_chats)
if sb.button("Новый чат", icon=":material/add:", width="stretch"):
    select_chat(None)
    st.rerun()
chat_search_box(sb, user)
if all_chats:
    ids = [c.id for c in all_chats]
    titles = chat_labels(all_chats)
    picked = sb.radio(
        "История чатов",
        ids,
        index=ids.index(chat.id) if chat and chat.id in ids else None,
        format_func=lambda i: literal(titles[i]),  # radio options render Markdown
        label_visibility="collapsed",
    )
    if picked and (chat is None or picked != chat.id):
        select_chat(picked)
        load_chat_settings(service.chat(picked, user))
        st.rerun()
if chat is not None:
    with sb.expander("Переименовать или удалить чат"):
        new_title = st.text_input("Название", value=chat.title, max_chars=MAX_TITLE_CHARS)
        cols = st.columns(2)
        if cols[0].button("Сохранить", width="stretch") and new_title.strip():
            service.rename(chat.id, new_title, user)
            st.rerun()
        if cols[1].button("Удалить чат", type="primary", width="stretch"):
            service.delete(chat.id, user)
            select_chat(None)
            st.rerun()

# -- sidebar: documents ---------------------------------------------------------------------
sb.header("Документы")
upload_panel(sb, key="chat_uploads")
use_documents = sb.toggle("Использовать документы в ответах", key="use_documents")
readable = service.searchable_collections(user)
labels = collection_labels(readable, user)
if chat is not None and (len(readable) > 1 or service.searches_nothing(chat)):
    # None: every readable collection (new ones included); []: none, chosen on purpose.
    chosen_ids = list(labels) if chat.collection_ids is None else chat.collection_ids
    in_search = [c for c in chosen_ids if c in labels]
    picked_collections = sb.multiselect(
        "Искать в коллекциях",
        list(labels),
        default=in_search,
        format_func=lambda i: plain(labels[i]),  # options are plain text: no escapes
        key=f"collections_{chat.id}",
        help="По умолчанию — во всех коллекциях, доступных вам.",
    )
    wanted = None if set(picked_collections) == set(labels) else picked_collections
    if wanted != chat.collection_ids:
        chat = service.choose_collections(chat.id, wanted, user)
    if service.searches_nothing(chat):
        sb.warning(NO_COLLECTIONS, icon=":material/search_off:")
searched = [
    e
    for e in library.documents(user)
    if e.document.status in SEARCHABLE
    and (chat is None or chat.collection_ids is None or set(e.collections) & set(chat.collection_ids))
]
# Only what search can use: failed and unfinished files are listed on the documents page.
sb.caption(f"В поиске: {len(searched)} док., {sum(e.document.chunk_count for e in searched)} фрагм.")

# -- sidebar: model and generation ----------------------------------------------------------
sb.header("Модель")
# An assistant first (rag.lab.assistants); «Свои настройки» shows the sliders as before.
assistant_choice, _assistant_note = assistant_picker(sb, user)
if assistant_choice is None:
    names = list(providers)
    if st.session_state["provider"] not in names:
        st.session_state["provider"] = "offline"

    def _provider_label(name: str) -> str:
        p = providers[name]
        return p.label if p.status().available else f"{p.label} — не настроен"

    provider_name = sb.selectbox(
        "Провайдер",
        names,
        format_func=_provider_label,
        key="provider",
        on_change=lambda: st.session_state.pop("model_note", None),
    )
    provider = providers[provider_name]
    status = provider.status()
    if not status.available:
        sb.warning(f"{provider.label}: {status.reason}.")
    models = provider.models()
    model_ids = [m.id for m in models]
    chosen = st.session_state.get("model")
    if chosen not in model_ids:
        # A chat saved with a model the provider has since retired opens on its successor.
        successor, note = provider.resolve_model(chosen) if chosen else (model_ids[0], "")
        st.session_state["model"] = successor if successor in model_ids else model_ids[0]
        if note:
            st.session_state["model_note"] = note
    if model_note := st.session_state.get("model_note"):
        sb.info(literal(model_note), icon=":material/update:")
    labels = {m.id: m.label for m in models}
    model = sb.selectbox(
        "Модель",
        model_ids,
        format_func=lambda i: labels[i],
        key="model",
        on_change=lambda: st.session_state.pop("model_note", None),  # the person chose: the note is done
    )
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
    messages = service.messages(chat.id, user)
    head = st.columns([3, 1, 1])
    head[0].caption(literal(chat.title))
    if messages:
        export_buttons(head[2], chat, user)
    if messages and head[1].button("Очистить чат", width="stretch"):
        st.session_state["confirm_clear"] = chat.id
    if st.session_state.get("confirm_clear") == chat.id:
        st.warning("Удалить все сообщения этого чата? Это нельзя отменить.")
        c1, c2 = st.columns(2)
        if c1.button("Да, очистить", type="primary", width="stretch"):
            service.clear(chat.id, user)
            st.session_state.pop("confirm_clear", None)
            st.rerun()
        if c2.button("Отмена", width="stretch"):
            st.session_state.pop("confirm_clear", None)
            st.rerun()
    retrying = st.session_state.pop("retry_answer", None)
    if retrying:
        question = service.discard_failed(chat.id, retrying, user=user)
        if question is not None:
            messages = service.messages(chat.id, user)
            answer_again(question)
    rated = rating_footer(chat.id, user)
    for msg in messages:
        render_message(msg, found=focus_marker(msg.id), footer=rated)
    scroll_to_focus()
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


choice = (
    TurnChoice(
        provider=provider_name,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        use_documents=use_documents,
    )
    if assistant_choice is None
    else assistant_choice
)
if take_turn(service, chat, choice, on_new_chat=lambda created: select_chat(created.id)):
    # Re-render from the database: the chat list, its title and the clear button catch up.
    st.rerun()
