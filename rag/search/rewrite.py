"""Search queries rewritten by the chat's own remote model: standalone, in Russian and in English.

A follow-up («А какая плата?») names nothing by itself, and an English question finds little
in Russian documents by keywords. Before retrieval the model is asked, through the provider's
ordinary ``stream`` with temperature 0 and a short answer, for the question made standalone
with the chat history, once in Russian and once in English, as two lines::

    RU: Какая арендная плата установлена договором?
    EN: What is the rent set by the lease?

The rewrite is an aid, never a gate: it is skipped for providers without a generative model
(the offline one), it has its own short deadline (the stream is read in a worker thread), and
any failure (a provider error, the deadline, an answer in another shape) falls back to the raw
question, silently for the user and logged for the operator.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Sequence
from typing import Any

from providers.base import ChatMessage, GenerationParams, Provider
from settings import Settings

log = logging.getLogger(__name__)

# Fakes of the remote APIs recognise the rewrite request by this first line of its system prompt.
MARKER = "Задача: переформулировать вопрос пользователя для поиска по документам."
QUESTION_LABEL = "Вопрос:"
LANGUAGES = ("RU", "EN")
SYSTEM = (
    f"{MARKER}\n"
    "Тебе дают историю диалога и новый вопрос. Перепиши новый вопрос так, чтобы он был понятен "
    "без истории: замени местоимения и недосказанное тем, о чём шла речь. Не отвечай на вопрос "
    "и не добавляй того, о чём не спрашивали.\n"
    "Ответь ровно двумя строками и ничем больше:\n"
    "RU: <вопрос на русском языке>\n"
    "EN: <the question in English>"
)
# The deadline of a rewrite; the user waits for it before the answer starts.
TIMEOUT_S = 4.0
# Enough for two one-line questions in either language, whatever the tokenizer.
MAX_TOKENS = 256
# Longer than this, a question already says what it is about; its rewrite would only be cut off.
MAX_QUESTION_CHARS = 1000
MAX_HISTORY_CHARS = 400  # of each earlier message shown to the rewriting model
MAX_QUERY_CHARS = 400
# Providers whose "model" cannot write text: the offline one only quotes fragments.
NOT_GENERATIVE = frozenset({"offline"})

# "RU: …", also as a list item or in bold ("- **RU:** …"); never across a line break.
_LINE = re.compile(r"^[ \t*>#•\-]*(RU|EN)[ \t*]*[:：][ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_QUOTES = "\"'«»“”„`*"


class RewriteError(Exception):
    """The rewrite gave nothing usable (the reason is logged, the raw question is used)."""


def rewrite_messages(question: str, history: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The rewrite request: the instructions, then the dialogue and the question in one user turn."""
    lines = []
    for m in history:
        if m.role not in ("user", "assistant"):
            continue  # an earlier system prompt is no part of the dialogue
        who = "Пользователь" if m.role == "user" else "Ассистент"
        text = " ".join(m.content.split())
        if len(text) > MAX_HISTORY_CHARS:
            text = text[: MAX_HISTORY_CHARS - 1].rstrip() + "…"
        lines.append(f"{who}: {text}")
    dialogue = "\n".join(lines) if lines else "(истории нет)"
    user = f"История диалога:\n{dialogue}\n\n{QUESTION_LABEL} {' '.join(question.split())}"
    return [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=user)]


def parse_rewrite(text: str) -> list[str]:
    """The queries of a rewrite answer (``RU:`` first, then ``EN:``); [] when it has none."""
    found: dict[str, str] = {}
    for tag, body in _LINE.findall(text):
        query = " ".join(body.strip(_QUOTES + " ").split())
        if query and len(query) <= MAX_QUERY_CHARS and tag.upper() not in found:
            found[tag.upper()] = query
    return [found[tag] for tag in LANGUAGES if tag in found]


class QueryRewriter:
    """Asks the chat's model for standalone search queries in Russian and English."""

    def __init__(
        self,
        *,
        timeout_s: float = TIMEOUT_S,
        max_tokens: int = MAX_TOKENS,
        skip: Collection[str] = NOT_GENERATIVE,
    ) -> None:
        self.timeout_s = timeout_s
        self.params = GenerationParams(temperature=0.0, max_tokens=max_tokens)
        self.skip = skip

    def applies(self, provider: Provider, question: str) -> bool:
        """Whether this provider has a model to ask and the question is worth rewriting."""
        return provider.name not in self.skip and 0 < len(question.strip()) <= MAX_QUESTION_CHARS

    def rewrite(
        self, provider: Provider, model: str, question: str, history: Sequence[ChatMessage] = ()
    ) -> list[str]:
        """The rewritten queries, or [] when skipped or failed (search with the raw question then)."""
        if not self.applies(provider, question):
            return []
        try:
            queries = parse_rewrite(self._ask(provider, model, rewrite_messages(question, history)))
            if not queries:
                raise RewriteError("the answer has no RU:/EN: lines")
        except Exception as exc:  # any failure: the rewrite only ever helps
            log.warning(
                "%s: question rewrite failed (%s: %s); searching with the question as asked",
                provider.name,
                type(exc).__name__,
                exc,
            )
            return []
        log.debug("%s: question rewritten into %d queries", provider.name, len(queries))
        return queries

    def _ask(self, provider: Provider, model: str, messages: list[ChatMessage]) -> str:
        """The model's whole answer, read in a worker thread; RewriteError past the deadline.

        A stream cannot be closed from another thread while it is being read, so on the deadline
        the worker is told to give up: it closes the stream itself at its next delta, or when the
        provider's own timeout ends a request that hangs.
        """
        result: dict[str, Any] = {}
        done = threading.Event()
        abandoned = threading.Event()

        def work() -> None:
            try:
                completion = provider.stream(messages, model, self.params, ())
                try:
                    for _ in completion:
                        if abandoned.is_set():
                            return
                finally:
                    completion.close()
                result["text"] = completion.text
            except Exception as exc:  # handed to the waiting thread
                result["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name=f"rewrite-{provider.name}", daemon=True)
        worker.start()
        if not done.wait(self.timeout_s):
            abandoned.set()
            raise RewriteError(f"no answer within {self.timeout_s:g} s")
        if "error" in result:
            raise result["error"]
        return str(result["text"])


def rewriter_from(settings: Settings) -> QueryRewriter | None:
    """The rewriter the settings ask for (``RAG_REWRITE``), or None when it is off."""
    if not settings.rewrite:
        return None
    # Never wait longer for a rewrite than for an answer.
    return QueryRewriter(timeout_s=min(TIMEOUT_S, settings.llm_timeout_s))
