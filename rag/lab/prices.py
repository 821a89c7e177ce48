"""What an answer costs: a price table per model, roubles per 1000 tokens in and out.

The defaults are the vendors' list prices for synchronous requests (VAT included) as of about
``PRICES_READ``, written down from their published tariffs but not re-checked against the vendors'
pages from the machines this was built on (they cannot reach them): an estimate to verify. Prices
change, so ``RAG_MODEL_PRICES`` overrides any of them and adds others (an OpenAI-compatible
server's models have no default). The offline provider
runs here and costs nothing. A model with no price shows no cost («—»), never a made-up one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rag import RagError
from settings import Settings

PRICES_READ = "2025-10-01"
FREE_PROVIDERS = ("offline",)


@dataclass(frozen=True)
class Price:
    """Roubles per 1000 tokens of the prompt and of the answer."""

    rub_in: float
    rub_out: float


# provider/model: price. Yandex AI Studio bills input and output alike; GigaChat's pay-as-you-go
# packages likewise per token, whichever side.
DEFAULT_PRICES: dict[str, Price] = {
    "yandexgpt/yandexgpt-lite": Price(0.20, 0.20),
    "yandexgpt/yandexgpt/latest": Price(1.20, 1.20),
    "yandexgpt/yandexgpt/rc": Price(0.80, 0.80),
    "gigachat/GigaChat": Price(0.20, 0.20),
    "gigachat/GigaChat-2": Price(0.20, 0.20),
    "gigachat/GigaChat-Pro": Price(1.50, 1.50),
    "gigachat/GigaChat-2-Pro": Price(1.50, 1.50),
    "gigachat/GigaChat-Max": Price(1.95, 1.95),
    "gigachat/GigaChat-2-Max": Price(1.95, 1.95),
}


def price_table(settings: Settings) -> dict[str, Price]:
    """The built-in prices with ``RAG_MODEL_PRICES`` over them."""
    table = dict(DEFAULT_PRICES)
    if not settings.model_prices.strip():
        return table
    try:
        raw = json.loads(settings.model_prices)
        for key, (rub_in, rub_out) in raw.items():
            table[str(key)] = Price(float(rub_in), float(rub_out))
    except (ValueError, TypeError, AttributeError) as exc:
        raise RagError(
            'RAG_MODEL_PRICES: ожидается JSON вида {"провайдер/модель": [руб_вход, руб_выход]} '
            f"за 1000 токенов ({exc})."
        ) from None
    return table


def cost_rub(
    table: dict[str, Price], provider: str, model: str, tokens_in: int | None, tokens_out: int | None
) -> float | None:
    """Estimated cost of one answer in roubles; 0 offline, None when the model has no price."""
    if provider in FREE_PROVIDERS:
        return 0.0
    price = table.get(f"{provider}/{model}")
    if price is None or tokens_in is None or tokens_out is None:
        return None
    return round((tokens_in * price.rub_in + tokens_out * price.rub_out) / 1000, 4)
