"""Check page («Проверка»): test sets, runs of assistants over them in the background, kept results."""

from __future__ import annotations

import streamlit as st

from rag import RagError
from rag.lab.checks import STATES_ENDED, CheckQuestion, parse_questions
from storage import NotFoundError
from storage.models import CheckRun
from ui.auth import current_user
from ui.lab import get_lab, ms, rub, share
from ui.markup import literal, plain

STATE_LABELS = {
    "queued": "в очереди",
    "running": "идёт",
    "done": "готово",
    "cancelled": "отменено",
    "failed": "ошибка",
}

lab = get_lab()
user = current_user()

st.title("Проверка")
st.caption(
    "Тестовый набор — вопросы с ожидаемым фактом (и, по желанию, файлом). Ассистенты отвечают на "
    "каждый вопрос; для каждого считаются R@5 и MRR поиска, доля ответов с фактом, отказы, "
    "время p50/p95 и стоимость. Каждый запуск сохраняется."
)

# -- test sets --------------------------------------------------------------------------------
sets = lab.sets.sets_of(user)
with st.expander("Новый тестовый набор", expanded=not sets), st.form("new_set", clear_on_submit=True):
    name = st.text_input("Название набора", max_chars=120)
    uploaded = st.file_uploader(
        "Файл CSV или JSON (столбцы question, expected_fact, expected_file)", type=["csv", "json"]
    )
    typed = st.data_editor(
        [{"question": "", "expected_fact": "", "expected_file": ""}],
        num_rows="dynamic",
        column_config={
            "question": st.column_config.TextColumn("Вопрос"),
            "expected_fact": st.column_config.TextColumn("Ожидаемый факт"),
            "expected_file": st.column_config.TextColumn("Файл (необязательно)"),
        },
        key="typed_questions",
    )
    if st.form_submit_button("Создать набор", type="primary"):
        try:
            rows = typed.to_dict("records") if hasattr(typed, "to_dict") else list(typed)
            given = (
                parse_questions(uploaded.getvalue(), uploaded.name)
                if uploaded is not None
                else [
                    CheckQuestion(
                        r["question"].strip(), r["expected_fact"].strip(), r.get("expected_file") or None
                    )
                    for r in rows
                    if (r.get("question") or "").strip() and (r.get("expected_fact") or "").strip()
                ]
            )
            if not given:
                raise RagError("Добавьте вопросы: загрузите файл или заполните таблицу.")
            made = lab.sets.create(name, given, user)
            st.session_state["check_set"] = made.id
            st.rerun()
        except (RagError, NotFoundError) as exc:
            st.error(literal(str(exc)))

if not sets:
    st.stop()
labels = {s.id: s.name + (" · общий" if s.published else "") for s in sets}
if st.session_state.get("check_set") not in labels:
    st.session_state["check_set"] = sets[0].id
set_id = st.selectbox("Тестовый набор", list(labels), format_func=lambda i: plain(labels[i]), key="check_set")
questions = lab.sets.questions(set_id, user)
with st.expander(f"Вопросы набора ({len(questions)})"):
    st.table(
        [
            {"Вопрос": q.question, "Ожидаемый факт": q.expected_fact, "Файл": q.expected_file or ""}
            for q in questions
        ]
    )

# -- running --------------------------------------------------------------------------------
assistants = lab.assistants.list_for(user)
names = {a.id: a.name + (" · общий" if a.published else "") for a in assistants}
picked = st.multiselect(
    "Ассистенты", list(names), format_func=lambda i: plain(names[i]), key="check_assistants"
)
if st.button("Запустить проверку", type="primary", icon=":material/play_arrow:", disabled=not picked):
    try:
        lab.checks.start(set_id, picked, user)
    except (RagError, NotFoundError) as exc:
        st.error(literal(str(exc)))


def results_table(run: CheckRun) -> list[dict[str, str | int]]:
    """One row per assistant of a finished (or cancelled) run."""
    return [
        {
            "Ассистент": a["assistant"],
            "Вопросов": a["questions"],
            "R@5": f"{a['recall@5']:.2f}" if a["recall@5"] is not None else "—",
            "MRR": f"{a['mrr@10']:.2f}" if a["mrr@10"] is not None else "—",
            "Доля фактов": share(a["fact_rate"]),
            "Отказы": a["abstentions"],
            "Ошибки": a["errors"],
            "p50": ms(a["p50_ms"]),
            "p95": ms(a["p95_ms"]),
            "Стоимость": rub(a["cost_rub"]),
        }
        for a in run.results.get("assistants", [])
    ]


@st.fragment(run_every=1.0)
def runs_panel() -> None:
    """The set's runs: progress and cancel for a running one, figures for the rest."""
    runs = lab.checks.runs_of(set_id, user)
    if not runs:
        st.caption("Запусков пока нет.")
        return
    for run in runs:
        if run.state in STATES_ENDED:
            continue
        st.progress(run.fraction, text=f"Проверка идёт: {run.fraction:.0%}")
        if st.button("Отменить", key=f"cancel_{run.id}", icon=":material/cancel:"):
            lab.checks.cancel(run.id, user)
    finished = [r for r in runs if r.state in STATES_ENDED]
    if not finished:
        return
    by_id = {r.id: r for r in finished}

    def run_label(i: str) -> str:
        r = by_id[i]
        return f"{r.created_at:%d.%m.%Y %H:%M:%S} · {STATE_LABELS.get(r.state, r.state)}"

    shown = st.selectbox("Запуск", list(by_id), format_func=run_label, key=f"check_run_{set_id}")
    run = by_id[shown]
    if run.error:
        st.error(literal(run.error))
    rows = results_table(run)
    if rows:
        st.table(rows)
        for a in run.results.get("assistants", []):
            if a.get("note"):
                st.info(literal(f"{a['assistant']}: {a['note']}"), icon=":material/visibility_off:")
        st.bar_chart(
            {
                "R@5": {a["assistant"]: a["recall@5"] or 0.0 for a in run.results["assistants"]},
                "MRR": {a["assistant"]: a["mrr@10"] or 0.0 for a in run.results["assistants"]},
                "Доля фактов": {a["assistant"]: a["fact_rate"] or 0.0 for a in run.results["assistants"]},
            },
            stack=False,
        )
    if len(finished) > 1:
        st.subheader("История запусков")
        st.table(
            [
                {
                    "Запуск": run_label(r.id),
                    **{
                        a["assistant"]: f"R@5 {a['recall@5'] or 0:.2f} · факты {share(a['fact_rate'])}"
                        for a in r.results.get("assistants", [])
                    },
                }
                for r in finished
            ]
        )


runs_panel()
