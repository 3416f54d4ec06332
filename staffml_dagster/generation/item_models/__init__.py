"""The registry of item models: every module in this package holds one or more families."""

from __future__ import annotations

import importlib
import pkgutil

from staffml_dagster.generation.item_model import ItemModel


def _registry() -> dict[str, ItemModel]:
    out: dict[str, ItemModel] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, ItemModel) and obj is not ItemModel and obj.id and obj.__module__ == module.__name__:
                if obj.id in out:
                    raise ValueError(f"item model id {obj.id!r} defined twice")
                out[obj.id] = obj()
    return out


REGISTRY: dict[str, ItemModel] = _registry()
