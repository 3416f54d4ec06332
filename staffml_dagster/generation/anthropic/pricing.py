"""What a reply costs: the price table of ``specs/models.yaml`` and the billed token counts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from staffml_dagster.specs import SpecError, default_specs_dir, load_file

MODELS_FILE = "models.yaml"
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class ModelPrice(BaseModel):
    """USD per ``per_tokens`` tokens for one model, and how to ask it for a tool call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=3)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_read: float = Field(ge=0)
    forced_tool_choice: bool = True
    thinking: Literal["omit", "disabled"] = "omit"
    note: str | None = None


class ModelsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=10, description="the pricing page the numbers come from")
    currency: Literal["USD"]
    per_tokens: int = Field(gt=0)
    batch_discount: float = Field(gt=0, le=1, description="multiplier on every token price for Message Batches")
    default_model: str
    models: dict[str, ModelPrice] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_priced(self) -> "ModelsSpec":
        if self.default_model not in self.models:
            raise ValueError(
                f"default_model {self.default_model!r} has no entry under models ({', '.join(self.models)})"
            )
        return self

    def price(self, model: str) -> ModelPrice:
        if model not in self.models:
            raise SpecError(
                MODELS_FILE,
                f"models.{model}",
                "no price for this model; add input, output, cache_write_5m and cache_read (USD per MTok, from "
                f"{self.source.split(' ')[0]}) or choose one of {', '.join(sorted(self.models))}",
            )
        return self.models[model]


def load_models(path: Path | str | None = None) -> ModelsSpec:
    """Load ``specs/models.yaml`` (yaml.safe_load + pydantic); errors name the file and key."""
    path = Path(path) if path else default_specs_dir() / MODELS_FILE
    return load_file(path, ModelsSpec)  # raises SpecError("models.yaml", key, why)


def usage_dict(usage: Any) -> dict[str, int]:
    """The four billed token counts of a response's ``usage`` (missing ones are 0)."""
    if usage is None:
        return {k: 0 for k in USAGE_KEYS}
    get = usage.get if isinstance(usage, Mapping) else (lambda k, d=None: getattr(usage, k, d))
    return {k: int(get(k, 0) or 0) for k in USAGE_KEYS}


def cost_usd(price: ModelPrice, usage: Any, per_tokens: int = 1_000_000, discount: float = 1.0) -> float:
    """USD for one response: every token category at its price, times the batch discount if any."""
    u = usage_dict(usage)
    total = (
        u["input_tokens"] * price.input
        + u["output_tokens"] * price.output
        + u["cache_creation_input_tokens"] * price.cache_write_5m
        + u["cache_read_input_tokens"] * price.cache_read
    )
    return total / per_tokens * discount
