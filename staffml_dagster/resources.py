"""Dagster resources shared by the stages."""

from __future__ import annotations

import dagster as dg

from staffml_dagster.specs import Specs, cached_specs


class SpecsResource(dg.ConfigurableResource):
    """The validated specs/ directory, loaded once per process."""

    directory: str | None = None

    def load(self) -> Specs:
        return cached_specs(self.directory)
