"""Zone framings: what a question asks, given an item model and a setting.

A framing turns one item model's computation into one question for one zone at one
level: it picks the asked step, decides what the scenario hands over (the level's
``specs`` policy), chooses the common mistake whose wrong value differs from the answer,
and renders scenario, question, solution, mistake and napkin math from the phrasing
banks in ``assets/framings.yaml`` and ``assets/item_models/<id>.yaml``.
"""

from __future__ import annotations

import ast
import math
import random
from dataclasses import dataclass, replace
from functools import lru_cache

import pint
import yaml

from staffml_dagster.generation.calc import Calc, CalcStep, fmt_quantity, round_sig
from staffml_dagster.generation.item_model import ItemModel, Setting, formatted_values, platform_figure
from staffml_dagster.paths import assets_dir
from staffml_dagster.specs import SAFE_YAML, Level
from staffml_dagster.units import quantity

# The longest title the `validated_questions` suite accepts (specs/quality.yaml).
MAX_TITLE_CHARS = 120


@dataclass
class Draft:
    """A generated question before it becomes a row."""

    item_model: str
    framing: str
    asked: str
    title: str
    scenario: str
    question: str
    realistic_solution: str
    common_mistake: str
    napkin_math: str
    calc: list[CalcStep]
    answer_value: float
    answer_unit: str
    mistake_id: str
    mistake_value: float
    platforms: list[str]
    workload: str | None
    scale_point: str
    signature: str = ""


@lru_cache(maxsize=4)
def _bank(path: str) -> dict:
    with open(path) as fh:
        return yaml.load(fh, Loader=SAFE_YAML)


def framings_bank() -> dict:
    return _bank(str(assets_dir() / "framings.yaml"))


class _Fmt(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(f"phrasing placeholder {{{key}}} has no value")


def fill(template: str, values: dict) -> str:
    return template.format_map(_Fmt(values))


def prefixed(calc: Calc, prefix: str, label_prefix: str) -> list[CalcStep]:
    """Rename every step with a prefix (for two-option comparisons)."""
    names = {s.name for s in calc.steps}
    out = []
    for s in calc.steps:
        expr = s.expression
        if s.kind == "derived":
            tree = ast.parse(expr, mode="eval")
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id in names:
                    node.id = prefix + node.id
            expr = ast.unparse(tree)
        out.append(replace(s, name=prefix + s.name, expression=expr, label=f"{label_prefix} {s.label}"))
    return out


def _disclosed(steps: list[CalcStep], level: Level, hide: set[str]) -> list[CalcStep]:
    """Givens the scenario hands over under the level's specs policy."""
    givens = [s for s in steps if s.kind == "given" and s.name not in hide]
    if level.specs == "given":
        return givens
    if level.specs == "partial":
        return [s for s in givens if not s.source.startswith("specs/hardware.yaml")]
    return [s for s in givens if s.source.startswith(("assumption", "specs/tracks.yaml", "observed"))]


def _shared_once(steps: list[CalcStep]) -> list[CalcStep]:
    """In a two-option comparison, state a figure both options share once, without its [A: ...] tag."""
    by_name = {s.name: s for s in steps}
    out = []
    for s in steps:
        twin = by_name.get("b_" + s.name[2:]) if s.name.startswith("a_") else None
        if twin is not None and twin.value == s.value and twin.unit == s.unit and twin.source == s.source:
            out.append(replace(s, label=s.label.split("] ", 1)[-1]))
            continue
        if s.name.startswith("b_"):
            a = by_name.get("a_" + s.name[2:])
            if a is not None and a.value == s.value and a.unit == s.unit and a.source == s.source:
                continue
        out.append(s)
    return out


def _givens_sentence(steps: list[CalcStep], level: Level) -> str:
    bank = framings_bank()["disclosure"]
    steps = _shared_once(steps)
    if not steps:
        return bank["none"][level.specs]
    listed = "; ".join(f"{s.label} = {fmt_quantity(s.value, s.unit)}" for s in steps)
    return fill(bank["intro"][level.specs], {"figures": listed})


def napkin_math(steps: list[CalcStep], conclusion: str) -> str:
    lines = ["**Assumptions & Constraints:**"]
    for s in steps:
        if s.kind == "given":
            lines.append(f"- {s.label}: {fmt_quantity(s.value, s.unit)} ({s.source})")
    lines += ["", "**Calculations:**"]
    for s in steps:
        if s.kind == "derived":
            lines.append(f"- {s.label}: `{s.name} = {s.expression}` = {fmt_quantity(s.value, s.unit)}")
    lines += ["", "**Conclusion:**", conclusion]
    return "\n".join(lines)


def common_mistake(mis: dict, values: dict) -> str:
    return (
        f"**The Pitfall:** {fill(mis['pitfall'], values)}\n"
        f"**The Rationale:** {fill(mis['rationale'], values)}\n"
        f"**The Consequence:** {fill(mis['consequence'], values)}"
    )


def _differs(a: float, b: float) -> bool:
    return not math.isclose(a, b, rel_tol=0.02)


@dataclass
class Framer:
    """Frames one (item model, setting) as a question in a zone at a level."""

    model: ItemModel
    s: Setting
    zone: str
    level: Level
    rng: random.Random
    other: Setting | None = None  # second option for evaluation

    # --------------------------------------------------------------- common pieces
    def base_values(self) -> dict:
        s = self.s
        bank = framings_bank()
        values = {
            "platform": s.platform.name,
            "platform_short": s.platform.name.split(" (")[0],
            "vendor": s.platform.vendor,
            "workload": s.workload.name if s.workload else "",
            "failure_mode": s.failure_mode,
            "scale": f"{s.scale_value:,.10g}",
            "track_setting": self.rng.choice(bank["track_settings"][s.track]),
            "topic_context": self.rng.choice(topic_contexts(s.topic)),
        }
        if self.other is not None:
            values["platform_b"] = self.other.platform.name
        return values

    def build(self, mistake: str | None = None, lever: bool = False, s: Setting | None = None) -> Calc:
        return build_calc(self.model, s or self.s, mistake, lever)

    def pick_mistake(self, target: str, right: float, lever: bool = False, ratio_of: str | None = None) -> tuple[str, dict, float] | None:
        """A misconception of the model that changes the asked value, chosen deterministically."""
        ids = list(self.model.phrasing.misconceptions)
        self.rng.shuffle(ids)
        for mid in ids:
            try:
                wrong_calc = self.build(mistake=mid, lever=lever)
                wrong = wrong_calc.get(target).value
                if ratio_of is not None:
                    a, b = wrong_calc.get(target), self.build(mistake=mid, s=self.other).get(ratio_of)
                    wrong = round_sig(float((quantity(a.value, a.unit) / quantity(b.value, b.unit)).to("").magnitude))
            except (ValueError, KeyError, ZeroDivisionError, pint.PintError):
                continue
            if _differs(wrong, right) and wrong > 0:
                return mid, self.model.phrasing.misconceptions[mid], wrong
        return None

    def finish(self, framing: str, asked: str, steps: list[CalcStep], answer: CalcStep, question: str, solution: str,
               conclusion: str, mistake: tuple[str, dict, float], values: dict, hide: set[str] = frozenset(), scenario_extra: str = "",
               platforms: list[str] | None = None) -> Draft:
        mid, mis, wrong = mistake
        values = {**values, "answer": fmt_quantity(answer.value, answer.unit), "wrong": fmt_quantity(wrong, answer.unit)}
        bank = framings_bank()
        question, solution, conclusion = fill(question, values), fill(solution, values), fill(conclusion, values)
        scenario_extra = fill(scenario_extra, values)
        situation = fill(self.rng.choice(self.model.phrasing.situations), values)
        lead = fill(self.rng.choice(bank["zones"][self.zone]["lead"]), values)
        disclosed = _givens_sentence(_disclosed(steps, self.level, hide), self.level)
        scenario = " ".join(x for x in [values["topic_context"], situation, scenario_extra, disclosed, lead] if x)
        titles = bank["zones"][self.zone].get("titles") or self.model.phrasing.titles
        title = fill(self.rng.choice(titles), values)
        title_suffix = bank["zones"][self.zone].get("title_suffix")
        if title_suffix:
            title = f"{title}{fill(self.rng.choice(title_suffix), values)}"
        if len(title) > MAX_TITLE_CHARS:  # a long platform or workload name: the shortest title that names them
            title = min((fill(t, values) for t in titles), key=len)
        return Draft(
            item_model=self.model.id,
            framing=framing,
            asked=asked,
            title=title,
            scenario=scenario,
            question=question,
            realistic_solution=solution,
            common_mistake=common_mistake(mis, values),
            napkin_math=napkin_math(steps, conclusion),
            calc=steps,
            answer_value=answer.value,
            answer_unit=answer.unit,
            mistake_id=mid,
            mistake_value=wrong,
            platforms=platforms or [self.s.platform.id],
            workload=self.s.workload.id if self.s.workload else None,
            scale_point=f"{self.s.scale_axis}={self.s.scale_value:g}",
        )

    def ask_phrase(self, step: str) -> dict:
        try:
            return self.model.phrasing.asks[step]
        except KeyError:
            raise KeyError(f"assets/item_models/{self.model.id}.yaml has no phrase for ask {step!r}") from None

    # --------------------------------------------------------------- zone framings
    def frame(self, ask: str) -> Draft | None:
        handler = getattr(self, f"_frame_{self.zone}", None)
        if handler is None:
            raise ValueError(f"no framing for zone {self.zone!r}")
        return handler(ask)

    def _compute(self, ask: str, framing: str, lever: bool = False) -> Draft | None:
        calc = self.build(lever=lever)
        steps = calc.closure(ask)
        answer = calc.get(ask)
        mistake = self.pick_mistake(ask, answer.value, lever=lever)
        if mistake is None:
            return None
        values = {**self.base_values(), **formatted_values(calc)}
        phrase = self.ask_phrase(ask)
        z = framings_bank()["zones"][self.zone]
        values["phrase"] = fill(phrase["phrase"], values)
        if lever:
            values["lever"] = fill(self.model.phrasing.lever["phrase"], values)
        question = self.rng.choice(z["question"])
        solution = " ".join([phrase["mechanism"], self.rng.choice(z["solution"])])
        conclusion = self.rng.choice(z["conclusion"])
        return self.finish(framing, ask, steps, answer, question, solution, conclusion, mistake, values)

    def _frame_quantify(self, ask: str) -> Draft | None:
        return self._compute(ask, "compute")

    def _frame_fluency(self, ask: str) -> Draft | None:
        return self._compute(ask, "estimate")

    def _frame_diagnosis(self, ask: str) -> Draft | None:
        return self._compute(ask, "diagnose")

    def _frame_optimization(self, ask: str) -> Draft | None:
        if not self.model.phrasing.lever:
            return None
        return self._compute(ask, "optimize", lever=True)

    def _share(self, ask: str, framing: str) -> Draft | None:
        limit = self.model.limit
        if limit is None or ask == limit:
            return None
        calc = self.build()
        calc.step("share", f"{ask} / {limit}", "percent", f"{self.ask_phrase(ask)['short']} as a share of {self.model.phrasing.limit['short']}")
        steps = calc.closure("share")
        answer = calc.get("share")
        mistake = None
        for mid in self._shuffled_misconceptions():
            wrong_calc = self.build(mistake=mid)
            try:
                wrong_calc.step("share", f"{ask} / {limit}", "percent", "share")
            except Exception:
                continue
            wrong = wrong_calc.get("share").value
            if _differs(wrong, answer.value):
                mistake = (mid, self.model.phrasing.misconceptions[mid], wrong)
                break
        if mistake is None:
            return None
        values = {**self.base_values(), **formatted_values(calc)}
        values["phrase"] = fill(self.ask_phrase(ask)["phrase"], values)
        values["limit_phrase"] = fill(self.model.phrasing.limit["phrase"], values)
        values["verdict"] = framings_bank()["verdict"]["over" if answer.value > 100 else "under"]
        z = framings_bank()["zones"][self.zone]
        question = self.rng.choice(z["question"])
        solution = " ".join([self.ask_phrase(ask)["mechanism"], self.rng.choice(z["solution"])])
        conclusion = self.rng.choice(z["conclusion"])
        return self.finish(framing, ask, steps, answer, question, solution, conclusion, mistake, values)

    def _frame_analyze(self, ask: str) -> Draft | None:
        return self._share(ask, "share-of-limit")

    def _shuffled_misconceptions(self) -> list[str]:
        ids = list(self.model.phrasing.misconceptions)
        self.rng.shuffle(ids)
        return ids

    def _solve(self, framing: str, step: str | None, key: str) -> Draft | None:
        if step is None or not getattr(self.model.phrasing, key, None):
            return None
        calc = self.build()
        steps = calc.closure(step)
        answer = calc.get(step)
        if answer.value <= 0:
            return None
        mistake = self.pick_mistake(step, answer.value)
        if mistake is None:
            return None
        values = {**self.base_values(), **formatted_values(calc)}
        spec = getattr(self.model.phrasing, key)
        values["phrase"] = fill(spec["phrase"], values)
        if self.model.limit:
            values["limit_phrase"] = fill(self.model.phrasing.limit["phrase"], values)
        z = framings_bank()["zones"][self.zone]
        question = self.rng.choice(z["question"])
        solution = " ".join([spec["mechanism"], self.rng.choice(z["solution"])])
        conclusion = self.rng.choice(z["conclusion"])
        return self.finish(framing, step, steps, answer, question, solution, conclusion, mistake, values)

    def _frame_design(self, ask: str) -> Draft | None:
        return self._solve("choose-setting", self.model.knob, "knob")

    def _frame_specification(self, ask: str) -> Draft | None:
        units = self.model.units
        return (self._solve("requirements-to-units", units, "units") if units else None) or self._solve("choose-setting", self.model.knob, "knob")

    def _frame_realization(self, ask: str) -> Draft | None:
        units = self.model.units
        return ((self._solve("size-at-scale", units, "units") if units else None)
                or self._solve("size-at-scale", self.model.knob, "knob") or self._compute(ask, "size-at-scale"))

    def _frame_mastery(self, ask: str) -> Draft | None:
        return self._solve("integrate", self.model.knob, "knob") or self._solve("integrate", self.model.units, "units")

    def _frame_evaluation(self, ask: str) -> Draft | None:
        """Compare the same computation on two platforms of the track: answer is A / B."""
        if self.other is None:
            return None
        a, b = self.build(), self.build(s=self.other)
        names = {st.name for st in a.steps}
        options = [x for x in (ask, self.model.knob, self.model.units) if x and x in names]
        ask = next((x for x in options if _differs(a.get(x).value, b.get(x).value) and a.get(x).value > 0 and b.get(x).value > 0), None)
        if ask is None:
            return None
        calc = Calc(steps=prefixed(a, "a_", f"[A: {self.s.platform.name}]") + prefixed(b, "b_", f"[B: {self.other.platform.name}]"))
        calc.step("ratio", f"a_{ask} / b_{ask}", "", f"{self._short(ask)}, A over B")
        answer = calc.get("ratio")
        mistake = self.pick_mistake(ask, answer.value, ratio_of=ask) or self._headline_ratio_mistake(answer.value)
        if mistake is None:
            return None
        values = {**self.base_values(), **{f"a_{k}": v for k, v in formatted_values(a).items()}, **{f"b_{k}": v for k, v in formatted_values(b).items()}, **formatted_values(a)}
        values["phrase"] = fill(self._phrase_spec(ask)["phrase"], values)
        z = framings_bank()["zones"][self.zone]
        question = self.rng.choice(z["question"])
        solution = " ".join([self._phrase_spec(ask)["mechanism"], self.rng.choice(z["solution"])])
        conclusion = self.rng.choice(z["conclusion"])
        steps = calc.closure("ratio")
        return self.finish("compare-options", ask, steps, answer, question, solution, conclusion, mistake, values,
                           platforms=[self.s.platform.id, self.other.platform.id])

    def _phrase_spec(self, step: str) -> dict:
        for key in ("knob", "units"):
            if getattr(self.model, key) == step:
                return getattr(self.model.phrasing, key)
        return self.ask_phrase(step)

    def _short(self, step: str) -> str:
        spec = self._phrase_spec(step)
        return spec.get("short") or step.replace("_", " ")

    def _headline_ratio_mistake(self, right: float) -> tuple[str, dict, float] | None:
        """The classic evaluation error: compare datasheet peaks instead of the binding figure."""
        pa, pb = self.s.platform, self.other.platform
        wrong = round_sig(float((pa.compute[pa.default_precision].q / pb.compute[pb.default_precision].q).to("").magnitude))
        if not _differs(wrong, right):
            return None
        return "headline-peak-ratio", framings_bank()["evaluation_mistake"], wrong

    def _frame_debug(self, ask: str) -> Draft | None:
        if self.model.observable is None:
            return None
        target, hidden, exponent = self.model.observable
        calc = self.build()
        nominal = calc.get(target)
        hidden_step = calc.get(hidden)
        factor = self.rng.choice(framings_bank()["debug_factors"])
        observed = round_sig(nominal.value * factor)
        calc.given("observed", observed, nominal.unit, f"measured {self.model.phrasing.observable['short']}", "observed in production (scenario)")
        if exponent == -1:
            calc.step("implied", f"{hidden} * {target} / observed", hidden_step.unit, f"effective {hidden_step.label} implied by the measurement")
        else:
            calc.step("implied", f"{hidden} * observed / {target}", hidden_step.unit, f"effective {hidden_step.label} implied by the measurement")
        answer = calc.get("implied")
        steps = calc.closure("implied")
        mis = framings_bank()["debug_mistake"]
        mistake = ("datasheet-figure", mis, hidden_step.value)
        values = {**self.base_values(), **formatted_values(calc)}
        values["hidden"] = hidden_step.label
        values["observed_phrase"] = fill(self.model.phrasing.observable["phrase"], values)
        values["observed"] = fmt_quantity(observed, nominal.unit)
        values["expected"] = fmt_quantity(nominal.value, nominal.unit)
        values["efficiency"] = f"{(answer.value / hidden_step.value) * 100:.0f}%"
        z = framings_bank()["zones"][self.zone]
        question = self.rng.choice(z["question"])
        solution = " ".join([self.model.phrasing.observable["mechanism"], self.rng.choice(z["solution"])])
        conclusion = self.rng.choice(z["conclusion"])
        extra = self.rng.choice(z["symptom"])
        return self.finish("infer-hidden", hidden, steps, answer, question, solution, conclusion, mistake, values, scenario_extra=extra)

    def _frame_recall(self, ask: str) -> Draft | None:
        p = self.s.platform
        available = [f for f in self.model.recall if (f == "compute" or getattr(p, f, None) is not None)]
        if not available:
            return None
        figure = available[self.rng.randrange(len(available))]
        calc = Calc()
        platform_figure(calc, "figure", self.s, figure)
        bank = framings_bank()["recall"]
        entry = bank["figures"][figure]
        if self.level.id == "L1":
            answer = calc.get("figure")
            wrong = round_sig(answer.value * entry["wrong_factor"])
            mis = entry["mistake"]
            asked = f"spec:{figure}"
            values = {**self.base_values(), "figure_name": entry["name"]}
        else:
            if figure not in ("compute", "memory_bandwidth"):
                return None
            calc = Calc()
            platform_figure(calc, "compute", self.s, "compute")
            platform_figure(calc, "bandwidth", self.s, "memory_bandwidth")
            calc.step("ridge", "compute / bandwidth", "op/byte", f"{p.name} ridge point")
            answer = calc.get("ridge")
            wrong = round_sig(answer.value / 8)
            mis = bank["ridge_mistake"]
            asked = "spec:ridge-point"
            values = {**self.base_values(), "figure_name": "ridge point (peak compute over memory bandwidth)"}
        values = {**formatted_values(self.build()), **values, **formatted_values(calc)}
        z = framings_bank()["zones"]["recall"]
        question = self.rng.choice(z["question"])
        solution = self.rng.choice(z["solution"]) + " " + (entry["why"] if self.level.id == "L1" else bank["ridge_why"])
        conclusion = self.rng.choice(z["conclusion"])
        steps = calc.steps
        return self.finish("recall-figure", asked, steps, answer, question, solution, conclusion, (f"recall-{figure}", mis, wrong), values, hide={s.name for s in steps})


_BUILDS: dict[tuple, list[CalcStep]] = {}


def build_calc(model: ItemModel, s: Setting, mistake: str | None = None, lever: bool = False) -> Calc:
    """The model's chain for a setting; memoized, returned as a fresh Calc the caller may extend."""
    # the failure mode and the topic only colour the text: they are not part of the computation
    key = (model.id, s.track, s.platform.id, s.workload.id if s.workload else None, s.scale_axis, s.scale_value,
           s.variant, s.specs.version, mistake, lever)
    steps = _BUILDS.get(key)
    if steps is None:
        if len(_BUILDS) > 20000:
            _BUILDS.clear()
        calc = Calc()
        model.build(s, calc, mistake=mistake, lever=lever)
        steps = _BUILDS[key] = list(calc.steps)
    return Calc(steps=list(steps))


@lru_cache(maxsize=1)
def _topic_bindings() -> dict:
    return _bank(str(assets_dir() / "topics.yaml"))["topics"]


def topic_contexts(topic: str) -> list[str]:
    return _topic_bindings()[topic]["contexts"]


def topic_item_models(topic: str) -> list[str]:
    return _topic_bindings()[topic]["item_models"]
