"""Offline provider: an extractive answer built from the retrieved fragments themselves.

No network and no model: the most relevant sentences of the fragments are quoted with
their citation numbers, so the app is useful on a fresh machine and tests are deterministic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from razdel import sentenize

from language import FOLLOW_UP_WORDS, stems
from providers.base import (
    Completion,
    Fragment,
    GenerationParams,
    ModelInfo,
    Prompt,
    ProviderStatus,
    Usage,
)

NOTHING_FOUND = (
    "В загруженных документах не нашлось сведений по этому вопросу. "
    "Попробуйте переформулировать вопрос или загрузите документ, где есть ответ."
)
NO_FRAGMENTS = (
    "Нет фрагментов документов для ответа: загрузите файлы в боковой панели "
    "(или включите «Использовать документы»), и я отвечу по ним."
)
MODEL_ID = "extractive"
MAX_SENTENCES = 3
# A follow-up like «А сколько он стоит?» has few content words of its own: borrow the
# previous question's words, at a lower weight, to know what "он" is about.
FOLLOW_UP_WEIGHT = 0.5


class OfflineProvider:
    """Extractive answers with [n] citations; needs no key."""

    name = "offline"
    label = "Без LLM (локально)"

    def status(self) -> ProviderStatus:
        """Always available."""
        return ProviderStatus(True)

    def models(self) -> list[ModelInfo]:
        """One pseudo-model."""
        return [ModelInfo(MODEL_ID, "Извлечение фрагментов", context_tokens=1_000_000)]

    def resolve_model(self, model: str) -> tuple[str, str]:
        """Every id is current: there is one model, and it never retires."""
        return model, ""

    def stream(
        self, messages: Prompt, model: str, params: GenerationParams, fragments: Sequence[Fragment] = ()
    ) -> Completion:
        """Stream the extractive answer word by word."""
        text = self.answer(messages, fragments, params)
        completion = Completion(re.findall(r"\S+\s*", text))
        prompt_words = sum(len(m.content.split()) for m in messages)
        completion.usage = Usage(prompt_tokens=prompt_words, completion_tokens=len(text.split()))
        return completion

    def answer(
        self,
        messages: Prompt,
        fragments: Sequence[Fragment],
        params: GenerationParams | None = None,
    ) -> str:
        """The whole extractive answer as text."""
        users = [m.content for m in messages if m.role == "user"]
        if not users:
            return NOTHING_FOUND
        if not fragments:
            return NO_FRAGMENTS
        weights = _query_weights(users[-1], users[-2] if len(users) > 1 else None)
        picked = _best_sentences(weights, fragments)
        if not picked:
            return NOTHING_FOUND
        lines = [f"{sentence} [{n}]" for sentence, n in picked]
        text = "По документам:\n\n" + "\n\n".join(lines)
        if params is not None:
            # Roughly four characters a token: respect the answer-length slider.
            limit = max(40, params.max_tokens * 4)
            if len(text) > limit:
                text = text[:limit].rsplit(" ", 1)[0] + "…"
        return text


def _query_weights(question: str, previous: str | None) -> dict[str, float]:
    weights = dict.fromkeys(stems(question, drop_stopwords=True), 1.0)
    if previous and len(weights) <= FOLLOW_UP_WORDS:
        for s in stems(previous, drop_stopwords=True):
            weights.setdefault(s, FOLLOW_UP_WEIGHT)
    return weights


def _best_sentences(weights: dict[str, float], fragments: Sequence[Fragment]) -> list[tuple[str, int]]:
    if not weights:
        return []
    candidates: list[tuple[str, int, set[str]]] = []
    for frag in fragments:
        body = frag.text
        for s in sentenize(body):
            sentence = " ".join(s.text.split())
            if len(sentence) < 3:
                continue
            candidates.append((sentence, frag.n, set(stems(sentence))))
    if not candidates:
        return []
    # IDF over the candidate sentences: a word in every sentence says little.
    df: dict[str, int] = {}
    for _, _, st in candidates:
        for t in st & weights.keys():
            df[t] = df.get(t, 0) + 1
    total = len(candidates)
    idf = {t: math.log(1 + total / (1 + df.get(t, 0))) for t in weights}
    best_possible = sum(w * idf[t] for t, w in weights.items()) or 1.0
    scored = []
    for order, (sentence, n, st) in enumerate(candidates):
        matched = st & weights.keys()
        score = sum(weights[t] * idf[t] for t in matched) / best_possible
        scored.append((score, -n, -order, sentence, n))
    scored.sort(reverse=True)
    top = scored[0][0]
    # Require a real share of the question's words; weaker sentences are noise.
    threshold = max(0.25, top * 0.6)
    picked: list[tuple[str, int]] = []
    seen: set[str] = set()
    for score, _, _, sentence, n in scored:
        if score < threshold or len(picked) == MAX_SENTENCES:
            break
        if sentence in seen:
            continue
        seen.add(sentence)
        picked.append((sentence, n))
    return picked
