"""Comparison page: one question, two to four assistants side by side, votes and the leaderboard."""

from __future__ import annotations

import time

import streamlit as st

from rag import RagError
from rag.lab.compare import MAX_COLUMNS, MIN_COLUMNS, Column, Comparison
from rag.lab.prices import PRICES_READ
from storage import NotFoundError
from ui.auth import current_user
from ui.lab import get_lab, ms, rub, share
from ui.markup import answer_markdown, literal, plain
from ui.messages import VERBATIM_PROVIDER, source_links

POLL_S = 0.1
RESULT = "comparison"

lab = get_lab()
user = current_user()
assistants = lab.assistants.list_for(user)
names = {a.id: a.name + (" · общий" if a.published else "") for a in assistants}

st.title("Сравнение")
if len(assistants) < MIN_COLUMNS:
    st.info("Для сравнения нужны хотя бы два ассистента: создайте их на странице «Ассистенты».")
    st.stop()

picked = st.multiselect(
    f"Ассистенты (от {MIN_COLUMNS} до {MAX_COLUMNS})",
    list(names),
    default=list(names)[:MIN_COLUMNS],
    format_func=lambda i: plain(names[i]),
    max_selections=MAX_COLUMNS,
    key="compare_assistants",
)
question = st.text_area("Вопрос", key="compare_question", max_chars=4000)
go = st.button("Сравнить", type="primary", icon=":material/compare_arrows:")


def figures(c: Column) -> str:
    """The figures under an answer."""
    tokens = "—" if c.tokens_in is None else f"{c.tokens_in} → {c.tokens_out}"
    return (
        f"Первый токен: {ms(c.first_token_ms)} · всего: {ms(c.total_ms)} · "
        f"токены: {tokens} · стоимость: {rub(c.cost_rub)}"
    )


def draw_finished(c: Column) -> None:
    """An answer once its column has ended: error, sources, figures."""
    if c.error:
        st.error(literal(c.error), icon=":material/error:")
    source_links(c.sources, None)
    st.caption(literal(figures(c)))


if go:
    try:
        started: Comparison | None = lab.compare.start(question, picked, user)
    except (RagError, NotFoundError) as exc:
        st.error(literal(str(exc)))
        started = None
    if started is not None:
        st.session_state[RESULT] = started
        st.session_state.pop("vote_done", None)
        cols = st.columns(len(started.columns))
        boxes = []
        for col, c in zip(cols, started.columns, strict=True):
            with col:
                st.subheader(literal(c.assistant))
                if c.note:
                    st.info(literal(c.note), icon=":material/visibility_off:")
                boxes.append((st.empty(), st.container()))
        shown = [""] * len(started.columns)
        drawn = [False] * len(started.columns)
        while not all(drawn):
            for i, c in enumerate(started.columns):
                text_box, tail = boxes[i]
                if c.text != shown[i]:
                    shown[i] = c.text
                    text_box.markdown(answer_markdown(c.text, verbatim=c.provider == VERBATIM_PROVIDER))
                if c.done.is_set() and not drawn[i]:
                    if c.text != shown[i]:
                        text_box.markdown(answer_markdown(c.text, verbatim=c.provider == VERBATIM_PROVIDER))
                    with tail:
                        draw_finished(c)
                    drawn[i] = True
            time.sleep(POLL_S)
        st.rerun()  # the finished comparison is drawn below, with the votes

done = st.session_state.get(RESULT)
if isinstance(done, Comparison) and done.finished and not go:
    st.markdown(f"**Вопрос:** {literal(done.question)}")
    cols = st.columns(len(done.columns))
    for col, c in zip(cols, done.columns, strict=True):
        with col:
            st.subheader(literal(c.assistant))
            if c.note:
                st.info(literal(c.note), icon=":material/visibility_off:")
            if c.text:
                st.markdown(answer_markdown(c.text, verbatim=c.provider == VERBATIM_PROVIDER))
            draw_finished(c)
    st.caption(
        "Стоимость — оценка по таблице цен "
        f"(ориентировочные цены поставщиков на {PRICES_READ}, свои — RAG_MODEL_PRICES); "
        "офлайн-модель бесплатна."
    )
    if st.session_state.get("vote_done"):
        st.success("Голос учтён.", icon=":material/how_to_vote:")
    else:
        with st.form("vote"):
            options = [("better", c.assistant_id) for c in done.columns]
            options += [("worse", c.assistant_id) for c in done.columns]
            options.append(("tie", ""))
            by_id = {c.assistant_id: c.assistant for c in done.columns}

            def label(option: tuple[str, str]) -> str:
                outcome, aid = option
                if outcome == "tie":
                    return "Ничья"
                return f"«{by_id[aid]}» {'лучше' if outcome == 'better' else 'хуже'} остальных"

            verdict = st.radio("Ваша оценка", options, format_func=lambda o: plain(label(o)), index=None)
            comment = st.text_area("Комментарий (необязательно)", max_chars=2000)
            if st.form_submit_button("Проголосовать"):
                if verdict is None:
                    st.warning("Выберите оценку.")
                else:
                    lab.votes.vote(
                        done.question, done.assistant_ids, verdict[0], verdict[1] or None, comment, user=user
                    )
                    st.session_state["vote_done"] = True
                    st.rerun()

st.header("Рейтинг")
whose = st.segmented_control(
    "Чьи голоса", ["Все голоса", "Мои голоса"], default="Все голоса", key="leaderboard_whose"
)
board = lab.votes.leaderboard(user, mine=whose == "Мои голоса")
if not board:
    st.caption("Голосов пока нет.")
else:
    st.table(
        [
            {
                "Ассистент": r.assistant,
                "Голосов": r.votes,
                "Побед": r.wins,
                "Поражений": r.losses,
                "Ничьих": r.ties,
                "Доля побед": share(r.win_rate),
                "95 % интервал": f"{share(r.low)} – {share(r.high)}",
            }
            for r in board
        ]
    )
    st.caption("Доля побед: ничья — половина победы; интервал Уилсона, 95 %.")
