"""What a suite run reports, shared by the Great Expectations runner (``expectations``) and the
plain pandas one (``plain_suite``): the result record, ``${name}`` parameter substitution, and
one failure line per failed expectation, written from a GX-shaped result dict (element and
unexpected counts, a sample of unexpected values, an observed value). Imports no GX.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SAMPLE = 5  # unexpected values quoted in a failure line
MAX_REPR = 160  # characters of an expected value (e.g. a long value_set) quoted in a failure line


@dataclass
class SuiteResult:
    suite: str
    success: bool
    blocking: bool
    failures: list[str] = field(default_factory=list)  # one line per failed expectation
    evaluated: int = 0  # number of expectations evaluated
    docs_path: Path | None = None  # the Data Docs index.html written for this run (its scripts come from CDNs)
    results_page: Path | None = None  # validation_results.html beside it: every stored result, readable offline


class MissingParameterError(KeyError):
    """A ``${name}`` placeholder in a suite's kwargs has no value in the run's params."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- parameters


def suite_params(specs) -> dict:
    """The values of the ``${name}`` placeholders every suite in specs/quality.yaml may use."""
    return {
        "zones": [z.id for z in specs.zones],
        "levels": [lv.id for lv in specs.levels.levels],
        "tracks": [t.id for t in specs.tracks.tracks],
        "areas": list(specs.topics.areas),
        "backends": ["item-models", "anthropic", "import"],
    }


def _plain(value: Any) -> Any:
    """numpy scalars/arrays, tuples and sets as plain Python values GX's pydantic models accept."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, (list, tuple, pd.Index, pd.Series)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def resolve_kwargs(kwargs: dict, params: dict, *, suite: str | None = None, expectation: str | None = None) -> dict:
    """Replace every ``"${name}"`` in ``kwargs`` (also inside lists and dicts) by ``params["name"]``.

    A value that is exactly ``"${name}"`` takes the parameter as is (a list, a number, ...); a
    placeholder inside a longer string is substituted as text. A parameter that is absent or
    ``None`` raises :class:`MissingParameterError` (a ``KeyError``) naming the suite, the
    expectation, the kwarg and the parameter.
    """

    def missing(name: str, key: str) -> MissingParameterError:
        where = f"expectation {expectation}, kwarg {key!r}" if expectation else f"kwarg {key!r}"
        known = ", ".join(sorted(params)) or "none"
        return MissingParameterError(
            f"{f'suite {suite}: ' if suite else ''}parameter ${{{name}}} has no value ({where}); known parameters: "
            f"{known}"
        )

    def sub(value: Any, key: str) -> Any:
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value)
            if whole:
                name = whole.group(1)
                if params.get(name) is None:
                    raise missing(name, key)
                return _plain(params[name])

            def text(m: re.Match) -> str:
                if params.get(m.group(1)) is None:
                    raise missing(m.group(1), key)
                return str(_plain(params[m.group(1)]))

            return PLACEHOLDER.sub(text, value)
        if isinstance(value, (list, tuple)):
            return [sub(v, key) for v in value]
        if isinstance(value, dict):
            return {k: sub(v, key) for k, v in value.items()}
        return _plain(value)

    return {key: sub(value, key) for key, value in kwargs.items()}


# --------------------------------------------------------------------------- failure lines


def _short(value: Any) -> str:
    value = _plain(value)
    text = f"{value:.6g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _expected(kwargs: dict) -> str:
    shown = {
        k: v for k, v in kwargs.items() if k not in ("column", "batch_id", "result_format", "catch_exceptions", "meta")
    }
    return ", ".join(f"{k}={_short(v)}" for k, v in shown.items()) or "(no arguments)"


def _observed(result: dict) -> str:
    parts = []
    if "unexpected_count" in result:
        count, total = result.get("unexpected_count"), result.get("element_count")
        pct = result.get("unexpected_percent")
        parts.append(
            f"{count} of {total} values unexpected" + (f" ({pct:.1f}%)" if isinstance(pct, (int, float)) else "")
        )
        counts = result.get("partial_unexpected_counts") or []
        if counts:
            sample = ", ".join(f"{_short(c['value'])} x{c['count']}" for c in counts[:SAMPLE])
        else:
            sample = ", ".join(_short(v) for v in (result.get("partial_unexpected_list") or [])[:SAMPLE])
        if sample:
            parts.append(f"e.g. {sample}")
    if result.get("partial_missing_list"):
        parts.append(f"missing {_short(result['partial_missing_list'])}")
    if "observed_value" in result and (result["observed_value"] is not None or not parts):
        parts.append(f"observed_value={_short(result['observed_value'])}")
    return "; ".join(parts) or f"result {_short(result)}"


def failure_line(type_: str, kwargs: dict, result: dict | None = None, error: str | None = None) -> str:
    """``<type> [<column>|table]: expected <kwargs>; <what was observed or why it could not run>``."""
    column = kwargs.get("column")
    head = f"{type_}" + (f" [{column}]" if column is not None else " [table]")
    if error:
        return f"{head}: expected {_expected(kwargs)}; could not evaluate: {error}"
    return f"{head}: expected {_expected(kwargs)}; {_observed(result or {})}"
