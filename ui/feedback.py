"""Ratings on the chat page (👍 / 👎 under each answer, an optional comment) and the admin's «Отзывы»."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

import streamlit as st

from rag.chats.ratings import DOWN, UP, RatingService, ratings_csv
from rag.identity.access import Forbidden
from storage import Message, NotFoundError
from storage.models import Rating
from ui.lab import get_lab
from ui.markup import literal, plain
from ui.messages import source_place
from ui.resources import get_chat_service, get_rating_service

SHOWN = 50  # ratings listed on the admin page (the CSV has every one that matches)
NEW_SET = ""  # the test-set choice that makes a new one
RATING_NAMES = {None: "Все", UP: "👍 Полезно", DOWN: "👎 Неверно"}


def _rate(message_id: str, user: Any) -> None:
    value = st.session_state.get(f"rating_{message_id}")
    if value is not None:  # a thumb taken back leaves the stored rating as it was
        comment = st.session_state.get(f"rating_comment_{message_id}", "")
        get_rating_service().rate(message_id, int(value), comment, user)


def _save_comment(message_id: str, user: Any) -> None:
    value = st.session_state.get(f"rating_{message_id}")
    if value is not None:
        _rate(message_id, user)
        st.session_state[f"rating_saved_{message_id}"] = True


def _add_to_test_set(message_id: str, question: str, user: Any) -> None:
    state = st.session_state
    sets = get_lab().sets
    try:
        set_id = state.get(f"testset_pick_{message_id}", NEW_SET)
        if set_id == NEW_SET:
            name = state.get(f"testset_new_{message_id}", "").strip() or "Из чата"
            set_id = sets.create(name, None, user).id
        fact = state.get(f"testset_fact_{message_id}", "")
        sets.add_question(set_id, question, fact, state.get(f"testset_file_{message_id}"), user=user)
        state[f"testset_note_{message_id}"] = "Вопрос добавлен в тестовый набор (страница «Проверка»)."
    except Forbidden as exc:
        state[f"testset_note_{message_id}"] = str(exc)
    except NotFoundError:
        state[f"testset_note_{message_id}"] = "Тестовый набор не найден: выберите другой."


def _test_set_popover(msg: Message, question: str, user: Any) -> None:
    """A 👍 answer's question into a test set of the model lab, with the fact it must state."""
    sets = get_lab().sets.sets_of(user)
    names = {t.id: t.name for t in sets}
    with st.popover("В тестовый набор", icon=":material/playlist_add:"):
        pick = st.selectbox(
            "Набор",
            [*names, NEW_SET],
            format_func=lambda i: plain(names[i]) if i else "Новый набор…",
            key=f"testset_pick_{msg.id}",
        )
        if pick == NEW_SET:
            st.text_input("Название нового набора", key=f"testset_new_{msg.id}", max_chars=120)
        st.text_input(
            "Ожидаемый факт",
            key=f"testset_fact_{msg.id}",
            placeholder="часть ответа, которую должен назвать верный ответ, например: 11 месяцев",
            max_chars=500,
        )
        files = list(dict.fromkeys(s.filename for s in msg.sources or []))
        st.selectbox(
            "Ожидаемый файл (необязательно)",
            [None, *files],
            format_func=lambda f: plain(f) if f else "—",
            key=f"testset_file_{msg.id}",
        )
        st.button(
            "Добавить",
            key=f"testset_add_{msg.id}",
            on_click=_add_to_test_set,
            args=(msg.id, question, user),
        )
        if note := st.session_state.pop(f"testset_note_{msg.id}", None):
            st.caption(literal(note))


def rating_footer(chat_id: str, user: Any) -> Callable[[Message], None]:
    """What goes under each answer of this chat: its thumbs and, once rated, a comment field."""
    ratings = get_rating_service().ratings_in(chat_id, user)
    questions: dict[str, str] = {}
    asked = ""
    for m in get_chat_service().messages(chat_id, user):
        if m.role == "user":
            asked = m.content
        else:
            questions[m.id] = asked

    def footer(msg: Message) -> None:
        if not msg.content:
            return  # an answer that failed before any text: nothing to rate
        current = ratings.get(msg.id)
        key = f"rating_{msg.id}"
        if current is not None and key not in st.session_state:
            st.session_state[key] = current.value
            st.session_state[f"rating_comment_{msg.id}"] = current.comment
        value = st.feedback("thumbs", key=key, on_change=_rate, args=(msg.id, user))
        if value is None:
            return
        with st.popover("Комментарий к оценке", icon=":material/comment:"):
            st.text_area(
                "Что в ответе верно или неверно?",
                key=f"rating_comment_{msg.id}",
                max_chars=2000,
            )
            st.button(
                "Сохранить отзыв", key=f"rating_send_{msg.id}", on_click=_save_comment, args=(msg.id, user)
            )
        if st.session_state.pop(f"rating_saved_{msg.id}", False):
            st.caption("Спасибо, отзыв сохранён.")
        if value == UP and questions.get(msg.id):
            _test_set_popover(msg, questions[msg.id], user)

    return footer


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _rating_card(r: Rating, names: dict[str, str]) -> None:
    who = names.get(r.user_id or "", "—")
    head = f"{'👍' if r.value == UP else '👎'} · {who} · {r.provider or ''} · {r.model or ''}"
    with st.container(border=True):
        st.markdown(f"**{literal(head)}** · {r.created_at:%Y-%m-%d %H:%M}")
        if r.comment:
            st.markdown(f"Комментарий: {literal(r.comment)}")
        st.caption("Вопрос")
        st.text(r.question)
        st.caption("Ответ")
        st.text(r.answer)
        if r.sources:
            st.caption("Источники: " + literal("; ".join(source_place(s) for s in r.sources)))


def ratings_section(me: Any) -> None:
    """«Отзывы»: recent ratings, filtered by rating, model and date, and their CSV (admin only)."""
    service: RatingService = get_rating_service()
    st.subheader("Отзывы")
    models = service.rated_models(me)  # Forbidden for anyone but an admin
    cols = st.columns(3)
    value = cols[0].selectbox(
        "Оценка", list(RATING_NAMES), format_func=lambda v: RATING_NAMES[v], key="ratings_value"
    )
    model = cols[1].selectbox(
        "Модель", [None, *models], format_func=lambda m: m or "Все", key="ratings_model"
    )
    today = datetime.now(UTC).date()
    period = cols[2].date_input(
        "Период", value=(today - timedelta(days=30), today), key="ratings_period", format="DD.MM.YYYY"
    )
    days = list(period) if isinstance(period, tuple | list) else [period]
    since = _day_start(days[0]) if days and days[0] else None
    until = _day_start(days[-1]) + timedelta(days=1) if days and days[-1] else None
    found = service.recent(me, value=value, model=model, since=since, until=until)
    names = service.user_names([r.user_id for r in found], me)
    if not found:
        st.info("Отзывов за выбранный период нет.")
        return
    st.caption(f"Найдено отзывов: {len(found)}")
    st.download_button(
        "Скачать CSV",
        data=partial(_csv, service, me, value, model, since, until),
        file_name="otzyvy.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key="ratings_csv",
    )
    for r in found[:SHOWN]:
        _rating_card(r, names)
    if len(found) > SHOWN:
        st.caption(f"…и ещё {len(found) - SHOWN} (все — в CSV)")


def _csv(
    service: RatingService,
    me: Any,
    value: int | None,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
) -> bytes:
    rows = service.recent(me, value=value, model=model, since=since, until=until, limit=100_000)
    return ratings_csv(rows, service.user_names([r.user_id for r in rows], me)).encode("utf-8")
