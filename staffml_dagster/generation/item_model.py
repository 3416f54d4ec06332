"""Item models: napkin-math families that questions are generated from.

An item model owns the *computation* of one family (e.g. weights + KV-cache footprint):
it adds given figures taken from specs/ and derived steps to a :class:`Calc`. Its
*phrasing* lives in ``assets/item_models/<id>.yaml`` (situations, asked quantities,
misconceptions, titles), so wording can be reviewed without reading code.

Contract for a subclass:

- ``id``, ``tracks`` (where the physics holds), ``workload_families`` (None if the
  family needs no model architecture), ``scale_axes`` (track scale axes it can vary).
- ``build(s, calc, mistake=None, lever=False)`` adds every step. ``mistake`` is one of
  the misconception ids in the YAML: build the chain the way the misconception does.
  ``lever`` applies the optimization named in the YAML's ``lever``.
- ``asks``: step names that can be asked (each needs a phrase in the YAML).
- ``limit``: a step name that the main ask is judged against (memory capacity, frame
  budget, ...), or None. ``knob``: a step name holding the solved design variable, or None.
- ``observable``: (step asked, hidden given, exponent) for debug framings: the observed
  value of the step is ``nominal * factor``; the hidden given scales it with ``exponent``.
- ``recall``: platform figure names a recall question may ask (memory, memory_bandwidth,
  compute, power, idle_power, clock, flash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from staffml_dagster.generation.calc import Calc, fmt_quantity
from staffml_dagster.paths import assets_dir
from staffml_dagster.specs import SAFE_YAML, Figure, Platform, Specs, Workload


@dataclass(frozen=True)
class Setting:
    """One concrete parameterisation of an item model inside a cell."""

    specs: Specs
    topic: str
    track: str
    platform: Platform
    workload: Workload | None
    scale_axis: str
    scale_value: float
    failure_mode: str
    variant: int = 0  # free index an item model may use for its own knobs (precision, ...)

    @property
    def wl(self) -> Workload:
        if self.workload is None:
            raise ValueError("this item model needs a workload")
        return self.workload


@dataclass(frozen=True)
class Phrasing:
    """The YAML phrasing bank of one item model."""

    id: str
    titles: list[str]
    situations: list[str]
    asks: dict[str, dict]
    misconceptions: dict[str, dict]
    limit: dict | None = None
    knob: dict | None = None
    lever: dict | None = None
    observable: dict | None = None
    units: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Phrasing":
        data = yaml.load(path.read_text(), Loader=SAFE_YAML)
        known = {"id", "titles", "situations", "asks", "misconceptions", "limit", "knob", "lever", "observable", "units"}
        missing = [k for k in ("id", "titles", "situations", "asks", "misconceptions") if k not in data]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}")
        return cls(**{k: data.get(k) for k in known}, extra={k: v for k, v in data.items() if k not in known})


class ItemModel:
    id: str = ""
    tracks: frozenset[str] = frozenset()
    workload_families: frozenset[str] | None = None
    scale_axes: tuple[str, ...] = ()
    asks: tuple[str, ...] = ()
    limit: str | None = None
    knob: str | None = None
    units: str | None = None
    observable: tuple[str, str, int] | None = None
    recall: tuple[str, ...] = ("memory", "memory_bandwidth")
    version: str = "1"

    # ----------------------------------------------------------------- to override
    def accepts(self, s: Setting) -> bool:
        """Whether this setting is physically meaningful (e.g. the model fits at all)."""
        return True

    def build(self, s: Setting, calc: Calc, mistake: str | None = None, lever: bool = False) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- shared
    @cached_property
    def phrasing(self) -> Phrasing:
        return Phrasing.load(assets_dir() / "item_models" / f"{self.id}.yaml")

    def fits(self, track: str, workload: Workload | None) -> bool:
        if track not in self.tracks:
            return False
        if self.workload_families is None:
            return True
        return workload is not None and workload.family in self.workload_families


# ----------------------------------------------------------------- helpers for build()


def platform_figure(calc: Calc, name: str, s: Setting, figure: str, label: str | None = None, precision: str | None = None, unit: str | None = None) -> float:
    """Add a platform figure from specs/hardware.yaml as a given step (optionally converted)."""
    p = s.platform
    if figure == "compute":
        prec = precision or p.default_precision
        fig = p.compute[prec]
        source = f"specs/hardware.yaml: {p.id}.compute.{prec}"
        text = label or f"{p.name} peak {prec.upper()} throughput"
    else:
        fig = getattr(p, figure)
        if fig is None:
            raise ValueError(f"{p.id} has no {figure} figure in specs/hardware.yaml")
        source = f"specs/hardware.yaml: {p.id}.{figure}"
        text = label or f"{p.name} {figure.replace('_', ' ')}"
    value, unit_out = fig.value, fig.unit
    if unit and unit != fig.unit:
        value, unit_out = float(fig.q.to(unit).magnitude), unit
    return calc.given(name, value, unit_out, text, source)


def spec_figure(calc: Calc, name: str, fig: Figure, label: str, where: str, unit: str | None = None) -> float:
    value, unit_out = fig.value, fig.unit
    if unit and unit != fig.unit:
        value, unit_out = float(fig.q.to(unit).magnitude), unit
    return calc.given(name, value, unit_out, label, f"{where}")


def workload_given(calc: Calc, name: str, s: Setting, attr: str, label: str, unit: str = "") -> float:
    w = s.wl
    value = getattr(w, attr)
    if value is None:
        raise ValueError(f"workload {w.id} has no {attr} in specs/workloads.yaml")
    if isinstance(value, Figure):
        return spec_figure(calc, name, value, label, f"specs/workloads.yaml: {w.id}.{attr}", unit)
    return calc.given(name, float(value), unit, label, f"specs/workloads.yaml: {w.id}.{attr}")


def scale_given(calc: Calc, name: str, s: Setting, label: str, unit: str = "") -> float:
    return calc.given(name, s.scale_value, unit, label, f"specs/tracks.yaml: {s.track}.scale_points.{s.scale_axis}")


def assumption(calc: Calc, name: str, value: float, unit: str, label: str, why: str) -> float:
    """A modelling assumption (not a hardware figure): stated with its reason."""
    return calc.given(name, value, unit, label, f"assumption: {why}")


def formatted_values(calc: Calc) -> dict[str, str]:
    return {s.name: fmt_quantity(s.value, s.unit) for s in calc.steps}
