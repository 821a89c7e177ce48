"""The question rewrite (rag.search.rewrite) through each remote provider's real SDK and fake server.

The fake answers the rewrite request with the canned rewrite a test sets; the tests read what
reached the server: the rewrite request first, then the answer's prompt with what was found.
"""

from __future__ import annotations

from collections.abc import Sequence

from providers import ChatMessage, Completion, Fragment, GenerationParams
from providers.base import Prompt
from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.chat import ChatService, TurnChoice
from rag.answer.pipeline import answer
from rag.library import Library
from rag.search.rewrite import MARKER, QueryRewriter
from tests.contract.harness import DEFAULT_DELTAS, ProviderCase, is_rewrite

TERM = "Срок аренды помещения составляет одиннадцать месяцев с даты подписания договора."
PAYMENT = "Ежемесячный платёж арендатора равен 45 000 рублей и вносится до пятого числа."
PARKING = "Арендатору выделяются два места на охраняемой парковке во дворе здания."
HISTORY = [
    ChatMessage(role="user", content="Какой срок аренды помещения?"),
    ChatMessage(role="assistant", content="Одиннадцать месяцев с даты подписания [1]."),
]
FOLLOW_UP = "А это сколько?"
REWRITE = "RU: Ежемесячный платёж арендатора\nEN: Monthly payment of the tenant"
PARAMS = GenerationParams(temperature=0.5, max_tokens=500)


def _library(library: Library) -> Library:
    for name, text in (("srok.txt", TERM), ("oplata.txt", PAYMENT), ("parkovka.txt", PARKING)):
        assert library.ingest(name, text.encode()).status == "indexed"
    return library


def _ask(case: ProviderCase, library: Library, rewriter: QueryRewriter) -> tuple[str, list[str], list[str]]:
    """The answer's text, the files of its sources and the queries retrieval used (one fragment)."""
    prepared = answer(
        library.retriever,
        case.provider,
        FOLLOW_UP,
        case.model,
        PARAMS,
        history=HISTORY,
        top_k=1,
        rewriter=rewriter,
    )
    text = "".join(prepared.completion)
    return text, [s.filename for s in prepared.sources], prepared.queries


def test_the_rewrite_reaches_retrieval(case: ProviderCase, library: Library) -> None:
    _library(library)
    case.fake.rewrite = REWRITE
    text, files, queries = _ask(case, library, QueryRewriter(timeout_s=5))
    assert text == "".join(DEFAULT_DELTAS)
    rewrite, answered = case.fake.requests
    # The rewrite request: its own instructions, the dialogue and the question, sent deterministically.
    assert is_rewrite(rewrite.messages) and rewrite.messages[0][1].startswith(MARKER)
    assert rewrite.messages[-1][0] == "user"
    assert "Какой срок аренды помещения?" in rewrite.messages[-1][1]
    assert FOLLOW_UP in rewrite.messages[-1][1]
    assert rewrite.temperature is not None and rewrite.temperature < 0.01
    assert rewrite.max_tokens is not None and rewrite.max_tokens <= 256
    assert rewrite.model == answered.model
    # Retrieval searched with both rewrites (in place of the follow-up widened with history).
    assert queries == ["Ежемесячный платёж арендатора", "Monthly payment of the tenant"]
    # The one fragment sent is the one the rewrite points at, not the one the question's words do.
    assert files == ["oplata.txt"]
    assert not is_rewrite(answered.messages)
    assert "45 000 рублей" in answered.messages[0][1] and "oplata.txt" in answered.messages[0][1]
    assert answered.messages[-1] == ("user", FOLLOW_UP)
    assert answered.temperature == 0.5


def test_without_the_rewrite_the_question_finds_another_fragment(
    case: ProviderCase, library: Library
) -> None:
    # The control for the test above: the same turn with the rewrite off sends one request.
    _library(library)
    prepared = answer(library.retriever, case.provider, FOLLOW_UP, case.model, PARAMS, HISTORY, top_k=1)
    assert "".join(prepared.completion) == "".join(DEFAULT_DELTAS)
    assert [s.filename for s in prepared.sources] == ["srok.txt"]
    assert prepared.queries == ["Какой срок аренды помещения? А это сколько?"]
    assert len(case.fake.requests) == 1 and not is_rewrite(case.fake.requests[0].messages)


def test_a_refused_rewrite_falls_back_to_the_question(case: ProviderCase, library: Library) -> None:
    _library(library)
    case.fake.rewrite = REWRITE
    case.fake.fail_next(404)  # not retried: the rewrite fails at once
    text, files, queries = _ask(case, library, QueryRewriter(timeout_s=5))
    assert text == "".join(DEFAULT_DELTAS)
    assert queries == ["Какой срок аренды помещения? А это сколько?"]
    assert files == ["srok.txt"]
    assert [is_rewrite(r.messages) for r in case.fake.requests] == [True, False]


def test_a_slow_rewrite_is_abandoned_and_the_answer_still_arrives(
    case: ProviderCase, library: Library
) -> None:
    _library(library)
    case.fake.rewrite = REWRITE
    case.fake.stall_next(5)  # longer than the rewrite's deadline (the provider's timeout is 2 s)
    # That the deadline, not the stall, ends the wait is tested without a clock in
    # tests/unit/test_rewrite.py; here the real SDKs show the fallback end to end.
    text, _, queries = _ask(case, library, QueryRewriter(timeout_s=0.5))
    assert text == "".join(DEFAULT_DELTAS)
    assert queries == ["Какой срок аренды помещения? А это сколько?"]
    assert [is_rewrite(r.messages) for r in case.fake.requests] == [True, False]


def test_an_unreadable_rewrite_falls_back_to_the_question(case: ProviderCase, library: Library) -> None:
    _library(library)
    case.fake.rewrite = "Извините, я не могу помочь с этим вопросом."
    text, _, queries = _ask(case, library, QueryRewriter(timeout_s=5))
    assert text == "".join(DEFAULT_DELTAS)
    assert queries == ["Какой срок аренды помещения? А это сколько?"]


def test_a_cut_rewrite_falls_back_to_the_question(case: ProviderCase, library: Library) -> None:
    _library(library)
    case.fake.rewrite = REWRITE
    case.fake.cut_next()
    text, _, queries = _ask(case, library, QueryRewriter(timeout_s=5))
    assert text == "".join(DEFAULT_DELTAS)
    assert queries == ["Какой срок аренды помещения? А это сколько?"]


def test_an_english_question_searches_in_russian_too(case: ProviderCase, library: Library) -> None:
    _library(library)
    case.fake.rewrite = "RU: Сколько мест на парковке выделено арендатору?\nEN: How many parking spaces?"
    prepared = answer(
        library.retriever,
        case.provider,
        "How many parking spaces?",
        case.model,
        PARAMS,
        top_k=1,
        rewriter=QueryRewriter(timeout_s=5),
    )
    assert "".join(prepared.completion) == "".join(DEFAULT_DELTAS)
    # The English rewrite is the question itself: searched once.
    assert prepared.queries == ["Сколько мест на парковке выделено арендатору?", "How many parking spaces?"]
    assert [s.filename for s in prepared.sources] == ["parkovka.txt"]
    assert "охраняемой парковке" in case.fake.requests[-1].messages[0][1]


def test_a_chat_turn_rewrites_through_the_service(case: ProviderCase, library: Library) -> None:
    _library(library)
    service = ChatService(
        library.chats,
        library.retriever,
        {case.name: case.provider},
        top_k=1,
        rewriter=QueryRewriter(timeout_s=5),
    )
    choice = TurnChoice(provider=case.name, model=case.model)
    first = service.ask(None, "Какой срок аренды помещения?", choice)
    assert first.run() == "".join(DEFAULT_DELTAS)
    case.fake.rewrite = REWRITE
    follow = service.ask(first.chat.id, FOLLOW_UP, choice)
    assert follow.run() == "".join(DEFAULT_DELTAS) and follow.error is None
    assert [s.filename for s in follow.sources] == ["oplata.txt"]
    kinds = [is_rewrite(r.messages) for r in case.fake.requests]
    assert kinds == [True, False, True, False]
    # The second rewrite saw the first exchange.
    assert "Какой срок аренды помещения?" in case.fake.requests[2].messages[-1][1]


class RecordingOffline(OfflineProvider):
    """The offline provider, recording every prompt it is given."""

    def __init__(self) -> None:
        self.prompts: list[list[ChatMessage]] = []

    def stream(
        self, messages: Prompt, model: str, params: GenerationParams, fragments: Sequence[Fragment] = ()
    ) -> Completion:
        self.prompts.append(list(messages))
        return super().stream(messages, model, params, fragments)


def test_the_offline_provider_sends_no_rewrite(library: Library) -> None:
    _library(library)
    offline = RecordingOffline()
    prepared = answer(
        library.retriever,
        offline,
        FOLLOW_UP,
        MODEL_ID,
        PARAMS,
        history=HISTORY,
        top_k=1,
        rewriter=QueryRewriter(timeout_s=5),
    )
    assert "".join(prepared.completion)
    assert len(offline.prompts) == 1 and MARKER not in offline.prompts[0][0].content
    # Today's widening of a short follow-up stays.
    assert prepared.queries == ["Какой срок аренды помещения? А это сколько?"]
