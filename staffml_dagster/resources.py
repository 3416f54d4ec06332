"""Dagster resources shared by the stages: the specs, and the generator backend that writes
questions and whose space capacity is measured in. (The embedder is ``embedding.EmbedderResource``,
the warehouse ``storage.DuckDBWarehouse``; ``definitions.resources`` feeds them all.)"""

from __future__ import annotations

import dagster as dg

from staffml_dagster.generation.backend import GeneratorBackend
from staffml_dagster.specs import Specs, cached_specs
from staffml_dagster.storage import DuckDBWarehouse

ITEM_MODELS = "item-models"
ANTHROPIC = "anthropic"
GENERATOR_BACKENDS = (ITEM_MODELS, ANTHROPIC)


class SpecsResource(dg.ConfigurableResource):
    """The validated specs/ directory, loaded once per process."""

    directory: str | None = None

    def load(self) -> Specs:
        return cached_specs(self.directory)


def make_backend(name: str, warehouse: DuckDBWarehouse | None = None) -> GeneratorBackend:
    """A fresh generator backend by name (plain function): the offline item models, or Claude
    shown as exemplars only the corpus questions of ``warehouse`` that reviews rated
    staff-worthy (none without a warehouse). Raises ValueError for an unknown name and the backend's own error when it
    cannot start (e.g. ANTHROPIC_API_KEY is missing), before any call."""
    if name == ITEM_MODELS:
        from staffml_dagster.generation.offline import ItemModelGenerator

        return ItemModelGenerator()
    if name == ANTHROPIC:
        from staffml_dagster.generation.anthropic import backend_from_env
        from staffml_dagster.quality.exemplars import reviewed_exemplars

        return backend_from_env(exemplars=reviewed_exemplars(warehouse.connect()) if warehouse is not None else [])
    raise ValueError(f"unknown generator backend {name!r}; choose one of {', '.join(GENERATOR_BACKENDS)}")


class GeneratorResource(dg.ConfigurableResource):
    """Which generator backend writes questions (``questions``) and whose space is measured
    (``cell_capacity``): ``item-models`` (offline, the default) or ``anthropic`` (Claude).
    The definitions feed it from ``STAFFML_GENERATOR``; a run chooses another with the run
    config ``resources: {generator: {config: {backend: anthropic}}}``."""

    backend: str = ITEM_MODELS

    def create_backend(self, warehouse: DuckDBWarehouse) -> GeneratorBackend:
        """A fresh backend for one step; a bad name or a backend that cannot start fails the
        step with its reason before anything is generated."""
        from staffml_dagster.generation.anthropic import AnthropicBackendError

        if self.backend not in GENERATOR_BACKENDS:
            raise dg.Failure(
                f"unknown generator backend {self.backend!r} in resource `generator` (STAFFML_GENERATOR or the run "
                f"config); choose one of {', '.join(GENERATOR_BACKENDS)}"
            )
        try:
            return make_backend(self.backend, warehouse)
        except (
            AnthropicBackendError,
            ValueError,
        ) as exc:  # e.g. the key is missing, a budget that is no number: before any call
            raise dg.Failure(str(exc)) from None
