"""One pint registry for the whole project.

Pint's default registry treats bits and bytes as dimensionless, which would let a
napkin-math step silently mix "bytes" with "parameters". Here information gets its own
dimension, compute gets an ``operation`` dimension (FLOP and integer OP share it), and
money is ``USD``. A temperature read on the Celsius scale is ``celsius_reading``: one kelvin
per degree, so a reading plus a rise in K (power x K/W) is a reading, and two readings differ
by a rise; it is never converted to kelvin (pint's own ``degC`` is an offset unit that refuses
reading + rise). Everything that carries a unit goes through :data:`ureg`.
"""

from __future__ import annotations

import importlib.resources
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import pint

_EXTRA_DEFINITIONS = [
    "operation = [operation] = op = OP",
    "FLOP = operation = flop",
    "FLOPS = FLOP / second",
    "OPS = operation / second",
    "USD = [currency]",
    "parameter = [] = param",
    "token = [] = tok",
    "celsius_reading = kelvin",
]


def _build_registry() -> pint.UnitRegistry:
    pint_dir = importlib.resources.files("pint")
    default = (pint_dir / "default_en.txt").read_text()
    if "\nbit = []\n" not in default:  # pragma: no cover - guards a pint upgrade
        raise RuntimeError("pint's default_en.txt no longer defines 'bit = []'; update staffml_dagster/units.py")
    with tempfile.TemporaryDirectory(prefix="staffml-units-") as tmp:
        Path(tmp, "default_en.txt").write_text(default.replace("\nbit = []\n", "\nbit = [information]\n"))
        with importlib.resources.as_file(pint_dir / "constants_en.txt") as constants:
            shutil.copy(constants, Path(tmp, "constants_en.txt"))
        registry = pint.UnitRegistry(str(Path(tmp, "default_en.txt")), cache_folder=None)
    for definition in _EXTRA_DEFINITIONS:
        registry.define(definition)
    return registry


ureg: pint.UnitRegistry = _build_registry()
Q_ = ureg.Quantity


@lru_cache(maxsize=1024)
def parse_unit(unit: str) -> pint.Unit:
    """Parse a unit string; ``""`` means dimensionless. Raises ValueError with the unit text."""
    try:
        return ureg.Unit(unit) if unit.strip() else ureg.dimensionless
    except Exception as exc:  # pint raises several error types
        raise ValueError(f"unknown unit {unit!r}: {exc}") from None


def quantity(value: float, unit: str) -> pint.Quantity:
    return Q_(value, parse_unit(unit))
