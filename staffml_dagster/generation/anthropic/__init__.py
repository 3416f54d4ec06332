"""The anthropic backend: Claude writes the questions, code checks them.

- :mod:`.pricing` — the price table of ``specs/models.yaml`` and what a reply costs;
- :mod:`.prompts` — the static (per track) and per-cell prompt blocks from ``assets/prompts/``;
- :mod:`.drafts` — the ``submit_questions`` tool schema, reading a reply, a draft's row and its checks;
- :mod:`.cache` — the on-disk response cache and the Message Batch manifests;
- :mod:`.generator` — :class:`AnthropicGenerator`, the generator backend over the SDK client;
- :mod:`.errors` — this backend's errors.

Importing this package does not import the ``anthropic`` SDK: a generator imports it when it
builds its own client, so an offline run never loads it.
"""

from staffml_dagster.generation.anthropic.drafts import GENERATOR_VERSION, inline_refs
from staffml_dagster.generation.anthropic.errors import (
    AnthropicBackendError,
    BatchTimeout,
    BudgetExceeded,
    MissingAPIKey,
)
from staffml_dagster.generation.anthropic.generator import KEY_ENV, AnthropicGenerator, backend_from_env
from staffml_dagster.generation.anthropic.pricing import load_models
from staffml_dagster.generation.anthropic.prompts import exemplar_block

__all__ = [
    "GENERATOR_VERSION",
    "KEY_ENV",
    "AnthropicBackendError",
    "AnthropicGenerator",
    "BatchTimeout",
    "BudgetExceeded",
    "MissingAPIKey",
    "backend_from_env",
    "exemplar_block",
    "inline_refs",
    "load_models",
]
