"""Napkin math as data: a chain of named steps, each re-computable with pint.

A *given* step is a figure with its unit and source (its expression is the literal
quantity, e.g. ``"3.35 TB/s"``). A *derived* step has an arithmetic expression over
earlier step names (``"weights + kv_cache"``). Stated values are rounded to four
significant figures, and every derived step is computed from the *stated* values of
the steps it uses, so anybody re-evaluating the chain from the text lands on the same
numbers. :func:`recompute` is the independent check used by the computability validator.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import pint

from staffml_dagster.units import Q_, parse_unit, ureg

SIG_FIGS = 4


@dataclass(frozen=True)
class CalcStep:
    name: str
    expression: str
    value: float
    unit: str
    label: str
    source: str = ""
    kind: str = "derived"  # "given" or "derived"

    def as_dict(self) -> dict:
        return asdict(self)


class CalcError(ValueError):
    pass


def round_sig(x: float, sig: int = SIG_FIGS) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, sig - 1 - int(math.floor(math.log10(abs(x)))))


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def _dimensionless(x) -> float:
    if isinstance(x, pint.Quantity):
        return float(x.to(ureg.dimensionless).magnitude)
    return float(x)


class KnifeEdge(CalcError):
    """A step whose value from the stated (rounded) figures differs from its value from the exact
    ones by more than rounding: a floor or ceil on the edge of a whole number (2 x sqrt(98.3 kB /
    24 B) / 16 is 7.9998, the exact 98.304 kB gives 8). A reader recomputing from the specs would
    get another answer, so the setting gives no question."""


KNIFE_EDGE = 1e-2  # relative gap between the stated-figure and exact-figure values of one step


def _ceil(x):
    return math.ceil(round(_dimensionless(x), 9))


def _floor(x):
    return math.floor(round(_dimensionless(x), 9))


def _min(*xs):
    return min(xs)


def _max(*xs):
    return max(xs)


class OutOfDomain(CalcError):
    """A step whose function has no real value at this setting (the square root of a negative
    remainder, the log of zero): the situation it describes does not arise here, so a design that
    needs the step gives no question at the setting, while the chain's other steps still stand."""


def _sqrt(x):
    if (x.magnitude if isinstance(x, pint.Quantity) else x) < 0:
        raise OutOfDomain(f"square root of a negative value ({x})")
    return x**0.5


def _log(x):
    v = _dimensionless(x)
    if v <= 0:
        raise OutOfDomain(f"logarithm of a value that is not positive ({v})")
    return math.log(v)


def _log2(x):
    return math.log2(_dimensionless(x))


def _exp(x):
    return math.exp(_dimensionless(x))


FUNCTIONS = {
    "ceil": _ceil,
    "floor": _floor,
    "min": _min,
    "max": _max,
    "sqrt": _sqrt,
    "ln": _log,
    "log2": _log2,
    "exp": _exp,
}


@lru_cache(maxsize=4096)
def _parse(expression: str) -> ast.Expression:
    try:
        return ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise CalcError(f"cannot parse expression {expression!r}: {exc.msg}") from None


def evaluate(expression: str, env: dict[str, pint.Quantity]) -> pint.Quantity:
    """Evaluate an arithmetic expression over named quantities. Only + - * / **, unary
    minus, numbers, names from ``env`` and the functions in FUNCTIONS are allowed."""
    tree = _parse(expression)

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quantity literal: '1 day'
            return _given(node.value)
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise CalcError(f"expression {expression!r} uses {node.id!r}, which no earlier step defines")
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FUNCTIONS
            and not node.keywords
        ):
            return FUNCTIONS[node.func.id](*[ev(a) for a in node.args])
        raise CalcError(f"expression {expression!r} uses an unsupported construct: {ast.dump(node)[:60]}")

    try:
        result = ev(tree)
    except pint.DimensionalityError as exc:
        raise CalcError(f"expression {expression!r} mixes incompatible units: {exc}") from None
    except ZeroDivisionError:
        raise CalcError(f"expression {expression!r} divides by zero") from None
    return result if isinstance(result, pint.Quantity) else Q_(result, ureg.dimensionless)


_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def evaluate_condition(expression: str, env: dict[str, pint.Quantity]) -> bool:
    """Evaluate a claim or condition such as ``"memory_time > compute_time and fits"``:
    comparisons (< <= > >= == !=) between arithmetic expressions, ``and``/``or``/``not``, and
    names of earlier steps. Quantities of different units compare after conversion."""
    tree = _parse(expression)

    def ev(node) -> bool:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = evaluate(ast.unparse(node.left), env)
            for op, comparator in zip(node.ops, node.comparators):
                right = evaluate(ast.unparse(comparator), env)
                try:
                    ok = _COMPARE[type(op)](left, right)
                except pint.DimensionalityError as exc:
                    raise CalcError(f"condition {expression!r} compares incompatible units: {exc}") from None
                if not ok:
                    return False
                left = right
            return True
        raise CalcError(f"condition {expression!r} must be comparisons joined by and/or/not")

    return bool(ev(tree))


def _to(q: pint.Quantity, unit: str, where: str) -> float:
    try:
        return float(q.to(_unit(unit)).magnitude)
    except pint.DimensionalityError:
        raise CalcError(f"{where}: result has units {q.units:~} which cannot be expressed in {unit!r}") from None


@dataclass
class Calc:
    """Builder for a chain of steps. Names must be identifiers and unique."""

    steps: list[CalcStep] = field(default_factory=list)
    _quantities: dict[str, pint.Quantity] = field(default_factory=dict, repr=False)
    _exact: dict[str, pint.Quantity] = field(default_factory=dict, repr=False)  # derived steps unrounded

    def _env(self) -> dict[str, pint.Quantity]:
        for s in self.steps[len(self._quantities) :]:
            self._quantities[s.name] = Q_(s.value, _unit(s.unit))
        return self._quantities

    def _check_name(self, name: str) -> None:
        if not name.isidentifier() or name in FUNCTIONS:
            raise CalcError(f"step name {name!r} is not a usable identifier")
        if any(s.name == name for s in self.steps):
            raise CalcError(f"step {name!r} defined twice")

    def given(self, name: str, value: float, unit: str, label: str, source: str) -> float:
        self._check_name(name)
        stated = round_sig(float(value), 8)  # figures are stated as given; only float noise is trimmed
        self.steps.append(CalcStep(name, f"{stated!r} {unit}".strip(), stated, unit, label, source, "given"))
        return stated

    def step(self, name: str, expression: str, unit: str, label: str) -> float:
        """A derived step, stated at SIG_FIGS and computed from the stated values before it (what
        a reader recomputes); also computed from the unrounded chain, and refused as a
        :class:`KnifeEdge` where the two disagree beyond rounding."""
        self._check_name(name)
        value = _to(evaluate(expression, self._env()), unit, f"step {name}")
        exact = _to(evaluate(expression, {**self._env(), **self._exact}), unit, f"step {name}")
        if not math.isclose(value, exact, rel_tol=KNIFE_EDGE, abs_tol=1e-12):
            raise KnifeEdge(
                f"step {name}: {fmt_number(value)} from the stated figures, {fmt_number(exact)} from the exact ones"
            )
        self._exact[name] = Q_(exact, _unit(unit))
        stated = round_sig(value)
        self.steps.append(CalcStep(name, expression, stated, unit, label, "", "derived"))
        return stated

    def holds(self, condition: str) -> bool:
        """Whether a condition over the steps so far holds (see :func:`evaluate_condition`)."""
        return evaluate_condition(condition, self._env())

    def get(self, name: str) -> CalcStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def closure(self, target: str) -> list[CalcStep]:
        """The steps ``target`` depends on (and itself), in chain order."""
        by_name = {s.name: s for s in self.steps}
        needed: set[str] = set()
        stack = [target]
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            step = by_name[name]
            if step.kind == "derived":
                stack.extend(
                    n.id for n in ast.walk(_parse(step.expression)) if isinstance(n, ast.Name) and n.id in by_name
                )
        return [s for s in self.steps if s.name in needed]


def recompute(steps: list[dict], rel_tol: float = 0.01) -> list[str]:
    """Re-evaluate a chain of step dicts from scratch. Returns the problems found (empty = sound)."""
    problems: list[str] = []
    env: dict[str, pint.Quantity] = {}
    for i, raw in enumerate(steps):
        name = str(raw.get("name", f"#{i}"))
        try:
            unit = str(raw.get("unit", ""))
            stated = float(raw["value"])
            expr = str(raw["expression"])
            if raw.get("kind") == "given":
                q = _given(expr)
            else:
                q = evaluate(expr, env)
            value = _to(q, unit, f"step {name}")
        except (CalcError, KeyError, ValueError, TypeError, pint.PintError) as exc:
            problems.append(f"step {name}: {exc}")
            env[name] = Q_(
                float(raw.get("value", 0) or 0),
                parse_unit(str(raw.get("unit", ""))) if _unit_ok(raw.get("unit", "")) else ureg.dimensionless,
            )
            continue
        if not math.isclose(value, stated, rel_tol=rel_tol, abs_tol=1e-12):
            problems.append(
                f"step {name}: {expr} = {round_sig(value):g} {unit}, but the stated value is {stated:g} {unit}"
            )
        env[name] = Q_(stated, parse_unit(unit))
    return problems


@lru_cache(maxsize=8192)
def _given(expression: str) -> pint.Quantity:
    """A given step's literal quantity ("3.35 TB/s", "8.03e9"), parsed once per process."""
    q = Q_(expression) if expression.strip() else 0
    return q if isinstance(q, pint.Quantity) else Q_(float(q), ureg.dimensionless)


@lru_cache(maxsize=512)
def _unit(unit: str):
    return parse_unit(unit)


def _unit_ok(unit: object) -> bool:
    try:
        parse_unit(str(unit))
        return True
    except ValueError:
        return False


def fmt_number(x: float, sig: int = SIG_FIGS) -> str:
    """Human formatting for napkin math: ``sig`` significant figures (4 in the napkin math, 3 in
    prose), thousands separators; whole numbers below ten million exactly."""
    if float(x).is_integer() and abs(x) < 1e7:
        return f"{int(x):,}"
    x = round_sig(x, sig)
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e7 or ax < 1e-3:
        mantissa, exp = f"{x:.{sig - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    if ax >= 1000:
        return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}".rstrip("0").rstrip(".")
    return f"{x:.{sig}g}"


_PLURAL = {
    "day",
    "hour",
    "minute",
    "second",
    "week",
    "month",
    "year",
    "byte",
    "bit",
    "token",
    "cycle",
    "operation",
    "sample",
    "request",
    "frame",
    "image",
    "step",
    "epoch",
    "query",
    "user",
    "device",
    "GPU",
    "node",
}
_PER = {"s": "second", "h": "hour", "hr": "hour", "min": "minute", "d": "day", "ms": "millisecond"}


def _singular(unit: str) -> str:
    """'days' -> 'day', 'queries' -> 'query': specs may write a countable unit either way."""
    if unit == "queries":
        return "query"
    return unit[:-1] if unit.endswith("s") and unit[:-1] in _PLURAL else unit


def fmt_quantity(value: float, unit: str, sig: int = SIG_FIGS) -> str:
    """A value with its unit as a person writes it: 12%, 3 per second, 1 day, 40 days."""
    unit = _singular(unit.strip())
    number = fmt_number(value, sig)
    if unit in ("", "dimensionless"):
        return number
    if unit == "percent":
        return f"{number}%"
    if unit == "celsius_reading":
        return f"{number} °C"
    if re.fullmatch(r"1\s*/\s*[A-Za-z]+(\*\*[23])?", unit):
        per = unit.split("/")[1].strip()
        return f"{number} per {_PER.get(per, _singular(per)).replace('**2', '²').replace('**3', '³')}"
    if unit in _PLURAL and number != "1":
        unit = "queries" if unit == "query" else unit + "s"
    return f"{number} {unit}"


def stated_quantities(steps: list[dict]) -> dict[str, pint.Quantity]:
    """Each step's stated value as a quantity, by name: the environment claims are checked in."""
    env: dict[str, pint.Quantity] = {}
    for raw in steps:
        try:
            env[str(raw["name"])] = Q_(float(raw["value"]), _unit(str(raw.get("unit", ""))))
        except (KeyError, TypeError, ValueError, pint.PintError):
            continue
    return env
