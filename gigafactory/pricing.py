"""The per-model price table a factory uses when an agent CLI reports tokens but no cost.

`FLEET_MODEL_PRICES` is a JSON object `{model: {"inputPerMtok": USD, "outputPerMtok": USD}}`
(US dollars per million tokens) laid over `DEFAULT_MODEL_PRICES`. A model is looked up by
its exact name, then by the longest table key that prefixes it (`gpt-5` prices
`gpt-5-codex`), then after dropping a `provider/` prefix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field, ValidationError

from gigafactory.models import CamelModel

__all__ = ["DEFAULT_MODEL_PRICES", "ModelPrice", "PriceTable", "parse_model_prices"]


class ModelPrice(CamelModel):
    """USD per million input and output tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


# List prices at the time of writing; operators override them with FLEET_MODEL_PRICES.
DEFAULT_MODEL_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4": ModelPrice(input_per_mtok=15.0, output_per_mtok=75.0),
    "claude-sonnet-4": ModelPrice(input_per_mtok=3.0, output_per_mtok=15.0),
    "claude-haiku-4": ModelPrice(input_per_mtok=1.0, output_per_mtok=5.0),
    "gpt-5": ModelPrice(input_per_mtok=1.25, output_per_mtok=10.0),
    "gpt-5-mini": ModelPrice(input_per_mtok=0.25, output_per_mtok=2.0),
    "gpt-4.1": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0),
    "o4-mini": ModelPrice(input_per_mtok=1.1, output_per_mtok=4.4),
    "gemini-2.5-pro": ModelPrice(input_per_mtok=1.25, output_per_mtok=10.0),
    "gemini-2.5-flash": ModelPrice(input_per_mtok=0.3, output_per_mtok=2.5),
    "gemini-2.5-flash-lite": ModelPrice(input_per_mtok=0.1, output_per_mtok=0.4),
}


@dataclass(frozen=True)
class PriceTable:
    """Model prices, with the lookup rules of the module docstring."""

    prices: Mapping[str, ModelPrice]

    def price(self, model: str | None) -> ModelPrice | None:
        """The price of `model`, or None when the table does not know it."""
        if not model:
            return None
        for name in (model, model.rsplit("/", 1)[-1]):
            if name in self.prices:
                return self.prices[name]
            prefixes = [key for key in self.prices if name.startswith(key)]
            if prefixes:
                return self.prices[max(prefixes, key=len)]
        return None

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """USD for the tokens, or None when the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6


def parse_model_prices(text: str | None) -> PriceTable:
    """The defaults overlaid with a `FLEET_MODEL_PRICES` JSON document.

    Raises:
        ValueError: the document is not a JSON object of valid prices; the message names the
            model at fault.
    """
    prices = dict(DEFAULT_MODEL_PRICES)
    if not text or not text.strip():
        return PriceTable(prices)
    try:
        document = json.loads(text)
    except ValueError as err:
        raise ValueError(f"FLEET_MODEL_PRICES is not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise ValueError("FLEET_MODEL_PRICES must be a JSON object {model: {inputPerMtok, ...}}")
    for model, value in document.items():
        try:
            prices[str(model)] = ModelPrice.model_validate(value)
        except ValidationError as err:
            raise ValueError(f"FLEET_MODEL_PRICES: bad price for model {model!r}: {err}") from None
    return PriceTable(prices)
