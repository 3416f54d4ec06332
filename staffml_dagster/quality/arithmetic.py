"""Recompute the arithmetic a question writes out in free text.

Imported questions (StaffML's published corpus, or any corpus without ``calc`` steps) state
their napkin math as prose: ``2(8-1)/8 * 14GB / 900GB/s = ~27ms``, ``100,000,000 / 2,048 =
48,828 seconds ≈ 13.6 hours``, ``1.825 of 3.42 mW leaves 87% margin``. This module finds
those statements, evaluates their operands with their units through pint, and compares the
result with the value the text states.

* A statement is a chain ``a = b = c`` (also ``≈``, ``=>``, ``→``) inside one clause; every
  pair of neighbouring sides that both evaluate is checked. The left side of the first
  ``=`` is the longest arithmetic expression ending there ("Flash usage: 150 KB / 512 KB"),
  the right side of each ``=`` the expression it starts with ("29% utilized").
* Percentages stated in words are checked too: "A of B leaves C% margin" (C = 1 - A/B),
  "A is C% of B" and "A of B (C%)" (C = A/B).
* The tolerance comes from the stated result: half a unit of its last significant digit
  (trailing zeros of an integer are not significant) plus the rounding of decimal operands;
  an integer result may also be the floor or ceiling (a count of instances). "~", "≈",
  "about" loosen it to 10%.
* Units that do not line up (``12.8 Wh * 0.60 = 7.68 W``: a rate written as a capacity) are
  compared as written and in base units; only when both disagree is the statement wrong.
* What cannot be parsed is not a finding: a question with no parseable statement is
  ``unverifiable``.

Plain functions, no Dagster.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import pint

from staffml_dagster.core.calc import fmt_number
from staffml_dagster.units import Q_, ureg

APPROX_TOLERANCE = 0.10  # relative tolerance of a result written with "~", "≈", "about"
EXPRESSION_TOLERANCE = 0.01  # relative tolerance when the stated side is itself an expression
MAX_TOKENS = 80  # longer clauses are not statements a reader checks by hand
MAX_TEXT = 20_000  # characters of one field read for statements (hostile input)

# ---------------------------------------------------------------------------------- units

_UNIT_WORDS: dict[str, str] = {}


def _units(pint_unit: str, *spellings: str) -> None:
    for s in spellings:
        _UNIT_WORDS[s] = pint_unit


_units("byte", "byte", "bytes", "Byte", "Bytes", "B")
_units("kB", "KB", "kB", "Kbytes", "kilobytes")
_units("MB", "MB", "Mbytes", "megabytes")
_units("GB", "GB", "Gbytes", "gigabytes")
_units("TB", "TB", "terabytes")
_units("PB", "PB", "petabytes")
_units("KiB", "KiB")
_units("MiB", "MiB")
_units("GiB", "GiB")
_units("TiB", "TiB")
_units("bit", "bit", "bits")
_units("kbit", "Kb", "kb", "Kbit", "kbit")
_units("Mbit", "Mb", "Mbit")
_units("Gbit", "Gb", "Gbit")
_units("Tbit", "Tb", "Tbit")
_units("Gbit/s", "Gbps")
_units("Mbit/s", "Mbps")
_units("kbit/s", "Kbps", "kbps")
_units("GB/s", "GBps")
_units("MB/s", "MBps")
_units("ns", "ns", "nanoseconds")
_units("us", "us", "µs", "μs", "microseconds")
_units("ms", "ms", "msec", "milliseconds")
_units("s", "s", "sec", "secs", "second", "seconds")
_units("min", "min", "mins", "minute", "minutes")
_units("hour", "h", "hr", "hrs", "hour", "hours")
_units("day", "day", "days")
_units("week", "week", "weeks")
_units("year", "year", "years", "yr", "yrs")
_units("Hz", "Hz")
_units("kHz", "kHz", "KHz")
_units("MHz", "MHz")
_units("GHz", "GHz")
_units("W", "W", "watt", "watts", "Watt", "Watts")
_units("mW", "mW")
_units("uW", "uW", "µW", "μW")
_units("kW", "kW")
_units("MW", "MW")
_units("J", "J", "joule", "joules", "Joule", "Joules")
_units("mJ", "mJ")
_units("uJ", "uJ", "µJ", "μJ")
_units("nJ", "nJ")
_units("pJ", "pJ")
_units("kJ", "kJ")
_units("MJ", "MJ")
_units("W*hour", "Wh")
_units("mW*hour", "mWh")
_units("kW*hour", "kWh")
_units("MW*hour", "MWh")
_units("V", "V", "volt", "volts")
_units("mV", "mV")
_units("mA", "mA")
_units("uA", "uA", "µA", "μA")
_units("mA*hour", "mAh")
_units("A*hour", "Ah")
_units("FLOP", "FLOP", "FLOPs", "flop", "flops", "op", "ops", "OP", "OPs", "MAC", "MACs", "mac", "macs")
_units("kFLOP", "KFLOPs", "kFLOPs", "KMACs", "kMACs")
_units("MFLOP", "MFLOP", "MFLOPs", "MMAC", "MMACs", "MOPs")
_units("GFLOP", "GFLOP", "GFLOPs", "GMAC", "GMACs", "GOPs")
_units("TFLOP", "TFLOP", "TFLOPs", "TMACs", "TOPs")
_units("PFLOP", "PFLOP", "PFLOPs")
_units("FLOP/s", "FLOPS", "OPS")
_units("MFLOP/s", "MFLOPS", "MOPS")
_units("GFLOP/s", "GFLOPS", "GOPS")
_units("TFLOP/s", "TFLOPS", "TOPS")
_units("PFLOP/s", "PFLOPS", "POPS")
_units("1/s", "fps", "FPS", "QPS", "qps", "RPS", "rps", "TPS")
_units("USD", "USD", "dollars", "dollar")

_MULTIPLIER_LETTERS = {"K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
_BILLION_OF = {
    "param",
    "params",
    "parameter",
    "parameters",
    "model",
    "models",
    "LLM",
    "token",
    "tokens",
    "weights",
}  # 70B model; else 4B is bytes
_DECIMAL_INFORMATION = {"kB": 1, "MB": 2, "GB": 3, "TB": 4}  # KB may be written for KiB: 7,680 B = 7.5 KB
_MULTIPLIER_WORDS = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_APPROX_WORDS = {"about", "approximately", "approx", "roughly", "around", "nearly", "almost", "~"}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "min": min,
    "max": max,
    "log2": math.log2,
    "log10": math.log10,
    "ceil": math.ceil,
    "floor": math.floor,
    "exp": math.exp,
}
_NOT_NOISE = _FUNCTIONS.keys() | {
    "per",
    "of",
    "and",
    "or",
    "vs",
    "versus",
    "than",
    "is",
    "are",
    "was",
    "so",
    "then",
    "which",
    "that",
    "to",
    "if",
}


@lru_cache(maxsize=2048)
def _unit_of_word(word: str) -> pint.Unit | None:
    """The pint unit a written word stands for: a unit (``GB/s``, ``GPU-hours``,
    ``req/s/GPU``: compound parts multiply and divide, count nouns weigh 1), or None when no
    part is a unit (the word is a count noun or prose)."""
    if word in _UNIT_WORDS:
        return ureg.Unit(_UNIT_WORDS[word])
    parts = word.split("/")
    unit, known = ureg.dimensionless, False
    for i, part in enumerate(parts):
        for piece in part.split("-"):
            u = _UNIT_WORDS.get(piece)
            if u is None:
                continue
            known = True
            unit = unit / ureg.Unit(u) if i else unit * ureg.Unit(u)
    return unit if known else None


def _is_unit(word: str) -> bool:
    return _unit_of_word(word) is not None


# ---------------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"(?P<hex>(?<![\w.])0x[0-9A-Fa-f]+\b)"
    r"|(?P<num>(?<![A-Za-z_\d.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][+-]?\d+(?![A-Za-z]))?|(?<![\w.])\.\d+)"
    r"|(?P<word>[A-Za-zµμ°][A-Za-z0-9µμ]*(?:[/\-][A-Za-zµμ][A-Za-z0-9µμ]*)*)"
    r"|(?P<op>[+\-*/^])"
    r"|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<pct>%)|(?P<dollar>\$)|(?P<tilde>~)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)"
)


@dataclass
class Token:
    kind: str
    text: str
    start: int
    end: int
    glued: bool  # no whitespace before it


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    glued = True
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "space":
            glued = False
            continue
        out.append(Token(kind, m.group(0), m.start(), m.end(), glued))
        glued = True
    return out


# ---------------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Number:
    """A number as written, with its unit: ``14GB``, ``~5 variables``, ``$2``, ``87%``."""

    value: float  # with K/M/million and % applied
    unit: pint.Unit | None  # None: a bare number or a count noun
    half_ulp: float  # half a unit of the last significant digit, same scale as value
    decimal: bool  # written with a fractional part (so it may itself be rounded)
    approx: bool
    text: str
    percent: bool = False  # written with %, so value is the fraction

    def quantity(self) -> pint.Quantity:
        return Q_(self.value, self.unit) if self.unit is not None else Q_(self.value, ureg.dimensionless)


def _half_ulp(digits: str, exponent: int) -> tuple[float, bool]:
    digits = digits.replace(",", "")
    if "." in digits:
        decimals = len(digits.split(".")[1])
        return 0.5 * 10 ** (exponent - decimals), True
    stripped = digits.rstrip("0")
    zeros = len(digits) - len(stripped) if stripped else 0
    return 0.5 * 10 ** (exponent + zeros), False


class _Fail(Exception):
    pass


class _Parser:
    """Recursive descent over tokens: + - * / ^, parentheses, sqrt/min/max, unary minus,
    implicit product of a number glued to a parenthesis ``2(8-1)``, quantities with units."""

    def __init__(self, tokens: list[Token]):
        self.t = tokens
        self.i = 0
        self.numbers: list[Number] = []
        self.operators = 0

    def peek(self, k: int = 0) -> Token | None:
        return self.t[self.i + k] if self.i + k < len(self.t) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise _Fail("unexpected end")
        self.i += 1
        return tok

    def expression(self) -> pint.Quantity:
        value = self.term()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.text in "+-":
            self.take()
            self.operators += 1
            right = self.term()
            value = value + right if tok.text == "+" else value - right
        return value

    def term(self) -> pint.Quantity:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok is not None and tok.kind == "op" and tok.text in "*/":
                self.take()
                self.operators += 1
                right = self.unary()
                value = value * right if tok.text == "*" else value / right
            elif (
                tok is not None
                and tok.kind == "word"
                and tok.text == "of"
                and self.numbers
                and self.numbers[-1].percent
                and (nxt := self.peek(1)) is not None
                and nxt.kind in ("num", "dollar", "tilde")
            ):
                self.take()  # "10% of 5,000 QPS"
                self.operators += 1
                value = value * self.unary()
            elif (
                tok is not None
                and tok.kind == "lp"
                and tok.glued
                and self.i
                and self.t[self.i - 1].kind in ("num", "rp")
            ):
                self.operators += 1
                value = value * self.unary()  # 2(8-1)
            else:
                return value

    def unary(self) -> pint.Quantity:
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text in "+-":
            self.take()
            value = self.unary()
            return -value if tok.text == "-" else value
        return self.power()

    def power(self) -> pint.Quantity:
        base = self.atom()
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text == "^":
            self.take()
            self.operators += 1
            exponent = self.unary()
            return base ** float(exponent.to(ureg.dimensionless).magnitude)
        return base

    def atom(self) -> pint.Quantity:
        tok = self.take()
        if tok.kind == "tilde":
            number_at = len(self.numbers)
            value = self.atom()
            self.numbers[number_at:] = [
                Number(n.value, n.unit, n.half_ulp, n.decimal, True, n.text, n.percent)
                for n in self.numbers[number_at:]
            ]
            return value
        if tok.kind == "lp":
            value = self.expression()
            if self.take().kind != "rp":
                raise _Fail("unbalanced parenthesis")
            return value
        if tok.kind == "word" and tok.text in _FUNCTIONS and (nxt := self.peek()) is not None and nxt.kind == "lp":
            self.take()
            args = [self.expression()]
            while (nxt := self.peek()) is not None and nxt.kind == "comma":
                self.take()
                args.append(self.expression())
            if self.take().kind != "rp":
                raise _Fail("unbalanced parenthesis")
            self.operators += 1
            return self.call(tok.text, args)
        if tok.kind == "word" and _is_unit(tok.text):  # "$2/hr": a bare unit after an operator
            return Q_(1, _unit_of_word(tok.text))
        if tok.kind == "dollar":
            nxt = self.peek()
            if nxt is None or nxt.kind != "num" or not nxt.glued:
                raise _Fail("$ without a number")
            return self.quantity(self.take(), currency=True)
        if tok.kind in ("num", "hex"):
            return self.quantity(tok)
        raise _Fail(f"unexpected {tok.text!r}")

    @staticmethod
    def call(name: str, args: list[pint.Quantity]) -> pint.Quantity:
        if name in ("min", "max"):
            return (min if name == "min" else max)(args)
        if len(args) != 1:
            raise _Fail(f"{name} takes one argument")
        if name == "sqrt":
            return args[0] ** 0.5
        magnitude = float(args[0].to(ureg.dimensionless).magnitude)
        return Q_(_FUNCTIONS[name](magnitude), ureg.dimensionless)

    def quantity(self, tok: Token, currency: bool = False) -> pint.Quantity:
        if tok.kind == "hex":
            value, half, decimal = float(int(tok.text, 16)), 0.5, False
        else:
            mantissa, _, exp = tok.text.lower().partition("e")
            if len(mantissa) > 40 or len(exp) > 4:
                raise _Fail("not a number a reader writes")  # 1e999999, a run of 5,000 digits
            value = float(mantissa.replace(",", "")) * 10.0 ** int(exp or 0)
            half, decimal = _half_ulp(mantissa, int(exp or 0))
        unit = ureg.Unit("USD") if currency else None
        approx = False
        nxt = self.peek()
        # a glued multiplier letter (43.7M, 500K, 3.2G) or a multiplier word (15 million)
        after = self.peek(1)
        if (
            nxt is not None
            and nxt.kind == "word"
            and nxt.glued
            and nxt.text == "B"
            and not (after is not None and after.kind == "word" and after.text in _BILLION_OF)
        ):
            pass  # 4B, 31,360B: bytes, taken as a unit below
        elif nxt is not None and nxt.kind == "word" and nxt.glued and nxt.text in _MULTIPLIER_LETTERS:
            factor = _MULTIPLIER_LETTERS[self.take().text]
            value, half = value * factor, half * factor
        elif nxt is not None and nxt.kind == "word" and nxt.text in _MULTIPLIER_WORDS:
            factor = _MULTIPLIER_WORDS[self.take().text]
            value, half = value * factor, half * factor
        nxt = self.peek()
        percent = nxt is not None and nxt.kind == "pct"
        if percent:
            self.take()
            value, half = value / 100, half / 100
        # up to three words: units multiply, "per X" divides, count nouns weigh 1
        words = 0
        while (
            words < 3
            and (nxt := self.peek()) is not None
            and nxt.kind == "word"
            and nxt.text not in _NOT_NOISE - {"per"}
        ):
            if nxt.text == "per":
                after = self.peek(1)
                if after is None or after.kind != "word":
                    break
                self.take()
                self.take()
                u = _unit_of_word(after.text)
                if u is not None:
                    unit = (unit or ureg.dimensionless) / u
                words += 2
                continue
            if nxt.text in _FUNCTIONS and (self.peek(1) is not None and self.peek(1).kind == "lp"):
                break
            self.take()
            words += 1
            u = _unit_of_word(nxt.text)
            if u is not None:
                unit = (unit or ureg.dimensionless) * u
        number = Number(value, unit, half, decimal, approx, tok.text, percent)
        self.numbers.append(number)
        return number.quantity()


def _parse(tokens: list[Token]) -> tuple[pint.Quantity, _Parser] | None:
    """The expression the tokens make up entirely, or None."""
    if not tokens or len(tokens) > MAX_TOKENS:
        return None
    parser = _Parser(tokens)
    try:
        value = parser.expression()
    except (_Fail, pint.PintError, ValueError, ZeroDivisionError, OverflowError, TypeError, AttributeError):
        return None
    if parser.i != len(tokens) or not parser.numbers:
        return None
    magnitude = value.magnitude
    if not isinstance(magnitude, (int, float)) or isinstance(magnitude, bool) or not math.isfinite(magnitude):
        return None  # sqrt(-1), 1e999: nothing a reader states
    return value, parser


def _parse_prefix(tokens: list[Token]) -> tuple[pint.Quantity, _Parser, int] | None:
    """The longest expression the tokens start with (the stated side of an ``=``)."""
    for end in range(min(len(tokens), MAX_TOKENS), 0, -1):
        parsed = _parse(tokens[:end])
        if parsed is not None:
            return parsed[0], parsed[1], end
    return None


def _parse_suffix(tokens: list[Token]) -> tuple[pint.Quantity, _Parser, int] | None:
    """The longest expression the tokens end with (the computed side of the first ``=``),
    starting at a number, a parenthesis, a function, ``$``, ``~`` or a sign."""
    starts = [
        i
        for i, t in enumerate(tokens)
        if t.kind in ("num", "hex", "lp", "dollar", "tilde", "op") or (t.kind == "word" and t.text in _FUNCTIONS)
    ]
    for start in starts:
        if len(tokens) - start > MAX_TOKENS:
            continue
        parsed = _parse(tokens[start:])
        if parsed is not None:
            return parsed[0], parsed[1], start
    return None


# ---------------------------------------------------------------------------------- statements


@dataclass
class Statement:
    """One checked equality: what the text computes and what it states."""

    text: str
    computed: float  # in the stated side's unit (or as written, see ``how``)
    stated: float
    unit: str  # the stated side's unit as written ("" when bare)
    tolerance: float  # absolute, in the same scale
    ok: bool
    how: str = "units"  # "units": pint in the stated unit; "as written"/"base units": units did not line up
    kind: str = "equation"  # "equation" or "percentage in words"
    suggestion: str = ""  # the value the operands give, written like the stated one
    stated_text: str = ""  # the stated result as written ("~27ms", "87%")

    def describe(self) -> str:
        if self.ok:
            return f"{self.text!r} holds"
        unit = f" {self.unit}" if self.unit and self.how == "units" else ""
        given = self.suggestion or f"{_fmt(self.computed)}{unit}"
        return f"{self.text!r}: the operands give {given}, not {self.stated_text or _fmt(self.stated) + unit}"


@dataclass
class ArithmeticCheck:
    statements: list[Statement] = field(default_factory=list)

    @property
    def wrong(self) -> list[Statement]:
        return [s for s in self.statements if not s.ok]

    @property
    def verifiable(self) -> bool:
        return bool(self.statements)


def _fmt(x: float) -> str:
    return fmt_number(x, 4) if x else "0"


_SEPARATOR = re.compile(r"(~=|=>|==|≈|≃|≅|→|=)")
_APPROX_SEPARATORS = {"~=", "≈", "≃", "≅"}
_LABEL_PARENS = re.compile(r"\(\s*(?:[A-Za-z][A-Za-z/\- ]*|(?:FP|INT|BF|TF|fp|int|bf)\d+[A-Za-z ]*)\)")


def clean(text: str) -> str:
    """Markdown and glyphs out, multiplication signs made operators, labels in parentheses dropped."""
    text = text[:MAX_TEXT]
    text = re.sub(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+", "", text)  # list markers are not minus signs
    text = re.sub(r"\*\*|__|`", " ", text)
    text = (
        text.replace("×", "*").replace("·", "*").replace("⋅", "*").replace("÷", "/").replace("−", "-").replace("–", "-")
    )
    text = re.sub(r"\b0x[0-9A-Fa-f]+\b", lambda m: str(int(m.group(0), 16)), text)
    text = re.sub(r"(?<=\d)x(?=\d)", "*", text)  # 640x640x3
    text = re.sub(r"(?<=[\w%)])\s+[xX]\s+(?=[\d(~$.]|sqrt|min|max)", " * ", text)  # 2 x 4, 100M x 0.0001s
    text = _LABEL_PARENS.sub(" ", text)  # "50 MB (activations)", "Weights (FP32)"
    return text


def clauses(text: str) -> list[str]:
    """Lines, then sentences and semicolon-separated parts: a statement never spans them."""
    out = []
    for line in clean(text).splitlines():
        for part in re.split(r";|(?<=[^\d\s])\.\s+|(?<=\d)\.\s+(?=[A-Z(\-])|\.\s*$", line):
            if part and part.strip():
                out.append(part.strip())
    return out


def _rounded(n: Number) -> bool:
    """Whether an operand is itself a rounded result: a decimal of two or more significant
    digits (1.49 ms, 0.078). One digit (0.5 h, 0.0001 s) is taken as meant exactly."""
    digits = re.sub(r"\D", "", n.text.lower().partition("e")[0]).lstrip("0")
    return n.decimal and bool(n.value) and len(digits) >= 2


def _tolerance(stated: Number | None, numbers: list[Number], stated_value: float, approx: bool) -> float:
    """Absolute tolerance on the stated value: its own rounding, the rounding of decimal
    operands (relative, summed), loosened for an approximate statement."""
    rel_operands = sum(n.half_ulp / abs(n.value) for n in numbers if _rounded(n))
    own = stated.half_ulp if stated is not None else abs(stated_value) * EXPRESSION_TOLERANCE
    tol = own * 1.001 + abs(stated_value) * rel_operands + 1e-12 * max(1.0, abs(stated_value))
    if approx:
        tol = max(tol * 2, abs(stated_value) * APPROX_TOLERANCE)
    return tol


def _compare(
    text: str,
    lhs: pint.Quantity,
    lhs_parser: _Parser,
    rhs: pint.Quantity,
    rhs_parser: _Parser,
    approx: bool,
    stated_text: str = "",
) -> Statement | None:
    """Compare a computed side with a stated side; None when they cannot be compared."""
    single = rhs_parser.numbers[0] if len(rhs_parser.numbers) == 1 and rhs_parser.operators == 0 else None
    approx = approx or any(n.approx for n in rhs_parser.numbers)
    lhs_approx = any(n.approx for n in lhs_parser.numbers)
    unit_text = ""
    if single is not None:
        unit_text = f"{single.unit:~}" if single.unit is not None and single.unit != ureg.dimensionless else ""
    bare = lhs_parser.operators == 0 and len(lhs_parser.numbers) == 1
    if bare:  # "32GB total = 32000MB": a conversion, checked only between explicit units
        a, b = lhs_parser.numbers[0], rhs_parser.numbers[0]
        if (
            single is None
            or a.unit is None
            or b.unit is None
            or a.unit.dimensionality != b.unit.dimensionality
            or lhs.dimensionless
        ):
            return None
    stated_value = float(rhs.magnitude)
    if lhs.dimensionality == rhs.dimensionality:
        computed = float(lhs.to(rhs.units).magnitude)
        tol = _tolerance(single, lhs_parser.numbers, stated_value, approx or lhs_approx)
        ok = abs(computed - stated_value) <= tol or _is_count(single, computed, stated_value)
        power = _DECIMAL_INFORMATION.get(unit_text)
        if not ok and power:  # the text may mean KiB by KB
            binary = computed * (1000 / 1024) ** power
            if abs(binary - stated_value) <= tol:
                computed, ok = binary, True
        return Statement(
            text,
            computed,
            stated_value,
            unit_text,
            tol,
            ok,
            "units",
            suggestion=_suggest(computed, single, unit_text),
            stated_text=stated_text,
        )
    # units that do not line up: as written (units dropped), then in base units
    plain = _plain(lhs_parser)
    stated_plain = single.value if single is not None else stated_value
    base_lhs, base_rhs = float(lhs.to_base_units().magnitude), float(rhs.to_base_units().magnitude)
    tol_rel = (
        _tolerance(single, lhs_parser.numbers, stated_plain, approx or lhs_approx) / abs(stated_plain)
        if stated_plain
        else 0.0
    )
    readings = [("as written", plain, stated_plain), ("base units", base_lhs, base_rhs)]
    if lhs.dimensionless and rhs.dimensionality == ureg.byte.dimensionality:  # 16*16*32 INT8 = 8 KB: one byte each
        in_bytes = float(rhs.to(ureg.byte).magnitude)
        readings += [
            ("bytes", float(lhs.magnitude), in_bytes),
            ("bytes", float(lhs.magnitude), in_bytes * 1.024 ** _DECIMAL_INFORMATION.get(unit_text, 0)),
        ]
    for how, c, s in readings:
        if c is not None and s and abs(c - s) <= tol_rel * abs(s) * 1.0001:
            return Statement(text, c, s, unit_text, tol_rel * abs(s), True, how, stated_text=stated_text)
    if plain is None:
        return None
    return Statement(
        text,
        plain,
        stated_plain,
        unit_text,
        tol_rel * abs(stated_plain),
        False,
        "as written",
        suggestion=f"{_suggest(plain, single, '')} (units do not line up: {lhs.units:~} vs {rhs.units:~})",
        stated_text=stated_text,
    )


def _plain(parser: _Parser) -> float | None:
    """The left side evaluated with every unit dropped (multipliers and % kept)."""
    stripped = [t for t in parser.t if not (t.kind == "word" and _is_unit(t.text))]
    parsed = _parse(stripped)
    if parsed is None:
        return None
    return float(parsed[0].magnitude)


def _is_count(stated: Number | None, computed: float, stated_value: float) -> bool:
    """An integer result may be the floor or the ceiling: 32000 MB / 382.5 MB = 83 instances."""
    if stated is None or stated.decimal or stated.unit is not None and not stated.unit.dimensionless:
        return False
    return stated_value in (math.floor(computed + 1e-9), math.ceil(computed - 1e-9)) and abs(stated_value) >= 1


def _suggest(computed: float, stated: Number | None, unit_text: str) -> str:
    """The computed value written like the stated one: as many significant digits (at least 3)."""
    sig = 3
    if stated is not None:
        digits = re.sub(r"[^\d]", "", stated.text.lower().partition("e")[0]).lstrip("0")
        sig = max(3, len(digits))
    if stated is not None and stated.percent:
        return f"{fmt_number(computed * 100, sig)}%"
    return f"{fmt_number(computed, sig)}{(' ' + unit_text) if unit_text else ''}"


def check_equations(text: str) -> list[Statement]:
    """Every checkable ``a = b`` in a text (see the module docstring)."""
    out: list[Statement] = []
    for clause in clauses(text):
        pieces = _SEPARATOR.split(clause)
        sides, seps = pieces[0::2], pieces[1::2]
        if not seps:
            continue
        tokens = [tokenize(s) for s in sides]
        prev = None  # (value, parser, text) of the side to the left of the next separator
        first = _parse_suffix(tokens[0])
        if first is not None:
            value, parser, start = first
            before = tokens[0][max(0, start - 3) : start]
            cut = any(t.kind == "op" for t in before)  # "compute 40ms + sync 15ms = ...": cut mid-expression
            bare = parser.operators == 0
            # a lone figure starts a statement only after a label ("Available: 32GB total = 32000MB")
            if bare and start and tokens[0][start - 1].text not in (":",):
                cut = True
            if not cut:
                prev = (value, parser, sides[0][tokens[0][start].start :].strip())
        for k, sep in enumerate(seps, 1):
            side = tokens[k]
            lead_approx = False
            while side and (
                side[0].kind == "tilde" or (side[0].kind == "word" and side[0].text.lower() in _APPROX_WORDS)
            ):
                lead_approx = True
                side = side[1:]
            right = _parse_prefix(side)
            if prev is not None and right is not None:
                value, parser, end = right
                stated_text = sides[k][side[0].start : side[end - 1].end].strip()
                try:
                    statement = _compare(
                        f"{prev[2]} {sep} {'~' if lead_approx else ''}{stated_text}",
                        prev[0],
                        prev[1],
                        value,
                        parser,
                        lead_approx or sep in _APPROX_SEPARATORS,
                        stated_text,
                    )
                except (pint.PintError, TypeError, ValueError, OverflowError, ZeroDivisionError):
                    statement = None  # operands pint cannot relate: unverifiable
                if statement is not None:
                    out.append(statement)
            # the next pair's left side is this whole side, when it is one expression
            whole = _parse(side) if side else None
            prev = (whole[0], whole[1], sides[k].strip()) if whole is not None else None
    return out


# "1.825 of 3.42 mW leaves 87% margin", "100 KB is 78% of 128 KB", "100 KB of 128 KB (78%)"
# bounded repetitions, anchored at the start of a number: no quadratic backtracking over a long digit run
_Q = r"(?<![\d,.])~?\$?\d[\d,]{0,24}(?:\.\d{1,12})?[KMGkB]?(?:\s?[A-Za-zµμ]{1,12}(?:/[A-Za-z]{1,12})?)?"
_P = r"(?<![\d.])\d{1,6}(?:\.\d{1,6})?"
_WORD_PATTERNS = (
    (
        "margin",
        re.compile(
            rf"(?P<a>{_Q})\s+(?:out\s+)?of\s+(?:the\s+|a\s+|an\s+)?(?P<b>{_Q})[^.;\n=]{{0,40}}?\b(?:leaves|leaving|left|gives|giving|is|=)\s+"
            rf"(?:only\s+|about\s+|roughly\s+|~)?(?P<c>{_P})\s?%\s*(?:of\s+)?(?:margin|headroom|spare|free|slack|unused|remaining)"
        ),
    ),
    (
        "share",
        re.compile(
            rf"(?P<a>{_Q})\s+(?:is|are|represents|uses|consumes|takes)\s+(?P<approx>only\s+|about\s+|roughly\s+|~|approximately\s+)?(?P<c>{_P})\s?%\s+of\s+(?:the\s+|a\s+|an\s+)?(?P<b>{_Q})"
        ),
    ),
    (
        "share",
        re.compile(
            rf"(?P<a>{_Q})\s+(?:out\s+)?of\s+(?:the\s+|a\s+|an\s+)?(?P<b>{_Q})\s*\((?P<approx>~|about\s+)?(?P<c>{_P})\s?%"
        ),
    ),
)


def _number_in(text: str) -> tuple[pint.Quantity, Number] | None:
    parsed = _parse_prefix(tokenize(text.strip()))
    if parsed is None or len(parsed[1].numbers) != 1:
        return None
    return parsed[0], parsed[1].numbers[0]


def check_percentages_in_words(text: str) -> list[Statement]:
    out = []
    cleaned = clean(text)
    for kind, pattern in _WORD_PATTERNS:
        for m in pattern.finditer(cleaned):
            a, b = _number_in(m.group("a")), _number_in(m.group("b"))
            if a is None or b is None:
                continue
            (qa, na), (qb, nb) = a, b
            if na.unit is None and nb.unit is not None:
                qa = Q_(na.value, nb.unit)  # "1.825 of 3.42 mW"
            if qa.dimensionality != qb.dimensionality or not qb.magnitude:
                continue
            ratio = float((qa / qb).to(ureg.dimensionless).magnitude)
            computed = 1 - ratio if kind == "margin" else ratio
            c = m.group("c")
            half, _ = _half_ulp(c, 0)
            stated = float(c) / 100
            approx = bool(m.groupdict().get("approx")) or "~" in m.group(0) or "about" in m.group(0)
            rel_operands = sum(n.half_ulp / abs(n.value) for n in (na, nb) if _rounded(n))
            tol = half / 100 * 1.001 + abs(stated) * rel_operands * 2 + 1e-12
            if approx:
                tol = max(tol * 2, abs(stated) * APPROX_TOLERANCE)
            ok = abs(computed - stated) <= tol
            out.append(
                Statement(
                    m.group(0).strip(),
                    computed,
                    stated,
                    "%",
                    tol,
                    ok,
                    "units",
                    "percentage in words",
                    suggestion=f"{fmt_number(computed * 100, 3)}%",
                    stated_text=f"{c}%",
                )
            )
    return out


def check_arithmetic(*texts: str) -> ArithmeticCheck:
    """Every checkable statement in the texts (napkin math, solution), each once."""
    seen: set[str] = set()
    result = ArithmeticCheck()
    for text in texts:
        if not text:
            continue
        for statement in check_equations(text) + check_percentages_in_words(text):
            key = " ".join(statement.text.split())
            if key in seen:
                continue
            seen.add(key)
            result.statements.append(statement)
    return result
