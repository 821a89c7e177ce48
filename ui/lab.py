"""The lab's pages' shared parts: the services for this run, the assistant form, figures as text."""

from __future__ import annotations

from typing import Any

import streamlit as st

from rag.answer.chat import TurnChoice
from rag.lab.assistants import AssistantSpec
from rag.lab.services import Lab, open_lab
from rag.search.retrieve import METHODS
from storage.models import Assistant, User
from ui.components import collection_labels
from ui.markup import plain
from ui.resources import get_library, get_providers

METHOD_LABELS = {"hybrid": "гибридный", "keyword": "по словам", "dense": "по смыслу"}


def get_lab() -> Lab:
    """The lab's services over the shared library and providers (cheap: built per run)."""
    return open_lab(get_library(), get_providers())


def assistant_label(a: Assistant, user: User) -> str:
    """An assistant's name with «общий» for a published one that is not the user's."""
    return a.name + (" · общий" if a.published else "")


def ms(value: float | None) -> str:
    """Milliseconds for a caption, «—» when unknown."""
    return "—" if value is None else f"{value:.0f} мс"


def rub(value: float | None) -> str:
    """Roubles for a caption, «—» when the model has no price."""
    return "—" if value is None else f"{value:.4f} ₽"


def share(value: float | None) -> str:
    """A proportion as a percentage."""
    return "—" if value is None else f"{100 * value:.0f} %"


def assistant_form(
    key: str, user: User, initial: Assistant | None = None, can_publish: bool = False
) -> tuple[AssistantSpec, bool] | None:
    """The assistant's fields; the spec (and whether to publish) when the form is submitted."""
    providers = get_providers()
    library = get_library()
    names = list(providers)
    start = initial.provider if initial is not None and initial.provider in names else "offline"
    provider = st.selectbox(
        "Провайдер",
        names,
        index=names.index(start),
        format_func=lambda n: providers[n].label,
        key=f"{key}_provider",
    )
    models = [m.id for m in providers[provider].models()]
    labels = {m.id: m.label for m in providers[provider].models()}
    readable = library.access.readable(user)
    coll_labels = collection_labels(readable, user)
    with st.form(key):
        name = st.text_input("Название", value=initial.name if initial else "", max_chars=80)
        description = st.text_area("Описание", value=initial.description if initial else "", max_chars=2000)
        wanted = initial.model if initial is not None and initial.model in models else models[0]
        model = st.selectbox("Модель", models, index=models.index(wanted), format_func=lambda i: labels[i])
        temperature = st.slider(
            "Температура", 0.0, 1.0, value=initial.temperature if initial else 0.3, step=0.05
        )
        max_tokens = st.slider(
            "Макс. длина ответа (токены)", 64, 4096, value=initial.max_tokens if initial else 1024, step=64
        )
        system_prompt = st.text_area(
            "Системный промпт (дополнение)", value=initial.system_prompt if initial else "", max_chars=4000
        )
        chosen = (initial.collection_ids if initial is not None else None) or []
        collections = st.multiselect(
            "Коллекции (пусто — все доступные пользователю)",
            list(coll_labels),
            default=[c for c in chosen if c in coll_labels],
            format_func=lambda i: plain(coll_labels[i]),
        )
        methods: list[str] = [str(m) for m in METHODS]
        method = st.selectbox(
            "Метод поиска",
            methods,
            index=methods.index(initial.method if initial else "hybrid"),
            format_func=lambda m: METHOD_LABELS[m],
        )
        top_k = st.slider("Фрагментов в ответ (top k)", 1, 20, value=initial.top_k if initial else 5)
        use_documents = st.toggle("Использовать документы", value=initial.use_documents if initial else True)
        rewrite = st.toggle("Переформулировать вопрос для поиска", value=initial.rewrite if initial else True)
        publish = (
            st.toggle("Опубликовать для всех", value=bool(initial and initial.published))
            if can_publish
            else False
        )
        submitted = st.form_submit_button("Сохранить", type="primary")
    if not submitted:
        return None
    fields: dict[str, Any] = dict(
        name=name,
        description=description,
        provider=provider,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        collection_ids=collections or None,
        method=method,
        top_k=top_k,
        use_documents=use_documents,
        rewrite=rewrite,
    )
    return AssistantSpec(**fields), publish


CHAT_ASSISTANT = "chat_assistant"
OWN_SETTINGS = "Свои настройки"


def assistant_picker(container: Any, user: User) -> tuple[TurnChoice | None, str | None]:
    """The chat sidebar's «Ассистент» choice: its turn settings and note, or None for «Свои настройки»."""
    lab = get_lab()
    found = {a.id: a for a in lab.assistants.list_for(user)}
    options = ["", *found]
    if st.session_state.get(CHAT_ASSISTANT) not in options:
        st.session_state[CHAT_ASSISTANT] = ""  # deleted, or no longer published
    picked = container.selectbox(
        "Ассистент",
        options,
        format_func=lambda i: plain(assistant_label(found[i], user)) if i else OWN_SETTINGS,
        key=CHAT_ASSISTANT,
        help="Сохранённая настройка модели и поиска (страница «Ассистенты»), или свои настройки ниже.",
    )
    if not picked:
        return None, None
    assistant = found[picked]
    choice, note = lab.assistants.choice(assistant, user)
    if choice.model == "":
        providers = get_providers()
        if choice.provider in providers:
            choice = choice.model_copy(update={"model": providers[choice.provider].models()[0].id})
    container.caption(
        plain(
            f"{assistant.provider} · {choice.model} · "
            f"поиск: {METHOD_LABELS.get(assistant.method, assistant.method)}, top {assistant.top_k}"
        )
    )
    if note:
        container.info(plain(note), icon=":material/visibility_off:")
    return choice, note
