"""The lab's pages driven headlessly: the chat's assistant, a comparison with a vote, a check run."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from providers.offline import MODEL_ID
from rag.lab.assistants import AssistantService, AssistantSpec
from rag.lab.checks import CheckQuestion, TestSetService
from rag.library import Library, open_library
from settings import Settings
from tests.app.conftest import make_app, upload

CONTRACT = (
    "Договор аренды нежилого помещения.\n\n"
    "Срок аренды составляет одиннадцать месяцев с даты подписания договора. "
    "Арендная плата составляет 45 000 рублей в месяц.\n\n"
    "Залог равен двум месячным платежам. Арендатор оплачивает коммунальные услуги отдельно."
)


def _library(data_dir: Path) -> Library:
    return open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)


def _app_with_contract(data_dir: Path):  # type: ignore[no-untyped-def]
    at = make_app()
    at.run()
    upload(at, ("dogovor.txt", CONTRACT.encode(), "text/plain"))
    return at


def _assistants(lib: Library) -> tuple[str, str]:
    service = AssistantService(lib.engine, lib.access, lib.actor)
    a = service.create(AssistantSpec(name="Юрист", provider="offline", model=MODEL_ID, top_k=1))
    b = service.create(AssistantSpec(name="Слова", provider="offline", model=MODEL_ID, method="keyword"))
    return a.id, b.id


def test_the_chat_answers_with_its_assistant_and_remembers_it(data_dir: Path) -> None:
    at = _app_with_contract(data_dir)
    lib = _library(data_dir)
    lawyer, _ = _assistants(lib)
    at.run()
    picker = next(s for s in at.sidebar.selectbox if s.label == "Ассистент")
    assert picker.value == ""  # «Свои настройки» by default
    picker.set_value(lawyer).run()
    assert not any(s.label == "Провайдер" for s in at.sidebar.selectbox)  # the sliders give way
    at.chat_input[0].set_value("Какой срок аренды?").run()
    assert not at.exception
    (chat,) = lib.chats.list_all()
    assert chat.assistant_id == lawyer
    answer = lib.chats.messages(chat.id)[-1]
    assert answer.settings is not None and answer.settings["assistant_name"] == "Юрист"
    assert len(answer.sources) == 1  # the assistant's top k
    # A fresh session on this chat picks its assistant again.
    again = make_app()
    again.query_params["chat"] = chat.id
    again.run()
    assert next(s for s in again.sidebar.selectbox if s.label == "Ассистент").value == lawyer


def test_a_comparison_shows_both_columns_and_a_vote_reaches_the_leaderboard(data_dir: Path) -> None:
    at = _app_with_contract(data_dir)
    lib = _library(data_dir)
    _assistants(lib)
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    at.text_area[0].set_value("Какой срок аренды?")
    at.button[0].click().run()
    assert not at.exception
    assert [h.value for h in at.subheader] == ["Слова", "Юрист"]  # by name
    figures = [c.value.replace("\\", "") for c in at.caption if c.value.startswith("Первый токен")]
    assert len(figures) == 2 and all("стоимость: 0.0000 ₽" in f for f in figures)
    assert sum("одиннадцать месяцев" in m.value for m in at.markdown) == 2
    best = next(o for o in at.radio[0].options if "Юрист" in o and "лучше" in o)
    at.radio[0].set_value(best)
    at.button[-1].click().run()
    assert not at.exception
    assert "Голос учтён." in [s.value for s in at.success]
    table = at.table[0].value
    rows = {r["Ассистент"]: r for r in table.to_dict("records")}
    assert (rows["Юрист"]["Голосов"], rows["Юрист"]["Побед"], rows["Юрист"]["Доля побед"]) == (1, 1, "100 %")
    assert (rows["Слова"]["Поражений"], rows["Слова"]["Доля побед"]) == (1, "0 %")


def test_a_check_runs_in_the_background_and_shows_the_services_figures(data_dir: Path) -> None:
    at = _app_with_contract(data_dir)
    lib = _library(data_dir)
    ids = _assistants(lib)
    questions = [
        CheckQuestion("Какой срок аренды?", "одиннадцать месяцев", "dogovor.txt"),
        CheckQuestion("Какая арендная плата?", "45 000 рублей"),
        CheckQuestion("Чему равен залог?", "двум месячным платежам"),
        CheckQuestion("Кто оплачивает коммунальные услуги?", "коммунальные услуги отдельно"),
        CheckQuestion("Сколько стоит парковка?", "бесплатно"),
    ]
    TestSetService(lib.engine, lib.access, lib.actor).create("Аренда", questions)
    at.switch_page("app_pages/checks.py").run()
    assert not at.exception
    at.multiselect[0].set_value(list(ids)).run()
    next(b for b in at.button if b.label == "Запустить проверку").click().run()
    deadline = time.monotonic() + 120
    while not at.table or len(at.table) < 2:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.5)
        at.run()
    assert not at.exception
    rows = at.table[-1].value.to_dict("records")
    assert [r["Ассистент"] for r in rows] == ["Юрист", "Слова"]
    from providers import build_providers
    from rag.lab.services import open_lab
    from ui.lab import share

    lab = open_lab(lib, build_providers(lib.settings))
    direct = lab.checks.evaluate(questions, list(ids))["assistants"]
    for row, want in zip(rows, direct, strict=True):
        assert row["R@5"] == f"{want['recall@5']:.2f}" and row["MRR"] == f"{want['mrr@10']:.2f}"
        assert row["Доля фактов"] == share(want["fact_rate"]) and row["Отказы"] == want["abstentions"]
    # The chart draws the same figures: its data travels as Arrow beside the Vega-Lite spec.
    (chart,) = at.get("vega_lite_chart")
    raw = chart.proto.datasets[0].data.data if chart.proto.datasets else chart.proto.data.data
    # Long format: (assistant, series, value) per bar.
    drawn = pa.ipc.open_stream(raw).read_all().to_pandas()
    bars = {(r[0], r[1]): r[2] for r in drawn.itertuples(index=False)}
    for want in direct:
        name = want["assistant"]
        assert bars[(name, "R@5")] == want["recall@5"] and bars[(name, "MRR")] == want["mrr@10"]
        assert bars[(name, "Доля фактов")] == want["fact_rate"]


def test_an_assistant_is_made_on_its_page_and_offered_in_the_chat(data_dir: Path) -> None:
    at = make_app()
    at.run()
    at.switch_page("app_pages/assistants.py").run()
    assert not at.exception
    assert at.title[0].value == "Ассистенты"
    at.text_input[0].set_value("Краткий")
    next(s for s in at.slider if s.label == "Фрагментов в ответ (top k)").set_value(3)
    next(s for s in at.selectbox if s.label == "Метод поиска").set_value("keyword")
    at.button[0].click().run()  # the form's «Сохранить»
    assert not at.exception
    assert "Ассистент «Краткий» сохранён." in [s.value.replace("\\", "") for s in at.success]
    lib = _library(data_dir)
    (made,) = AssistantService(lib.engine, lib.access, lib.actor).list_for()
    assert (made.name, made.top_k, made.method, made.published) == ("Краткий", 3, "keyword", False)
    at.switch_page("app_pages/chat.py").run()
    picker = next(s for s in at.sidebar.selectbox if s.label == "Ассистент")
    assert picker.options == ["Свои настройки", "Краткий"]  # as the sidebar shows them
