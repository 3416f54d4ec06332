"""A spec suite (``specs/quality.yaml``) evaluated in plain pandas, for the per-partition check.

Great Expectations takes seconds to import and a second to build a context and run a suite,
most of a one-partition backfill; a partition's few dozen rows need neither. This runner
evaluates the column-map expectation types the ``validated_questions`` suite uses the way GX
1.x evaluates them (nulls skipped except by the not-null check, ``mostly`` honoured, the
first 20 unexpected values sampled) and reports each failure in the same line GX's runner
writes (:func:`staffml_dagster.quality.suite_results.failure_line`), so the check names the
same problems. A type it does not know is a clear error naming the suite, not a silent pass;
the whole-corpus suites keep running in GX with their Data Docs (``expectations``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pandas as pd

from staffml_dagster.quality.suite_results import SuiteResult, failure_line, resolve_kwargs
from staffml_dagster.specs import Suite

__all__ = ["PLAIN_EXPECTATIONS", "run_plain_suite", "unsupported_expectations"]

PARTIAL = 20  # unexpected values sampled per expectation, as GX's SUMMARY result format


class _CannotEvaluate(Exception):
    """The expectation could not be computed on this frame (a missing column, wrong types)."""


def _values_to_be_unique(values: pd.Series, kwargs: dict) -> pd.Series:
    return values.duplicated(keep=False)


def _values_to_be_in_set(values: pd.Series, kwargs: dict) -> pd.Series:
    value_set = kwargs.get("value_set")
    if value_set is None:
        raise _CannotEvaluate("value_set is required")
    return ~values.isin(list(value_set))


def _outside(measure: pd.Series, kwargs: dict) -> pd.Series:
    """Values not within [min_value, max_value] (strict bounds when asked); a NaN measure is outside."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise _CannotEvaluate("min_value and max_value cannot both be None")
    inside = pd.Series(True, index=measure.index)
    if low is not None:
        inside &= measure > low if kwargs.get("strict_min") else measure >= low
    if high is not None:
        inside &= measure < high if kwargs.get("strict_max") else measure <= high
    return ~inside


def _values_to_be_between(values: pd.Series, kwargs: dict) -> pd.Series:
    try:
        numbers = pd.to_numeric(values)
    except (TypeError, ValueError) as exc:
        raise _CannotEvaluate(
            "Column values, min_value, and max_value must either be None or of the same type."
        ) from exc
    return _outside(numbers, kwargs)


def _value_lengths_to_be_between(values: pd.Series, kwargs: dict) -> pd.Series:
    return _outside(
        values.map(lambda v: len(v) if isinstance(v, str) else float("nan")).astype(float), kwargs
    )  # a non-string is unexpected


# expectation type -> unexpected mask over the column's non-null values
PLAIN_EXPECTATIONS: dict[str, Callable[[pd.Series, dict], pd.Series]] = {
    "expect_column_values_to_be_unique": _values_to_be_unique,
    "expect_column_values_to_be_in_set": _values_to_be_in_set,
    "expect_column_values_to_be_between": _values_to_be_between,
    "expect_column_value_lengths_to_be_between": _value_lengths_to_be_between,
    "expect_column_values_to_not_be_null": lambda values, kwargs: values.isna(),  # sees the nulls
}


def unsupported_expectations(suite: Suite) -> list[str]:
    """The suite's expectation types this runner cannot evaluate (empty when it can run it)."""
    return [e.type for e in suite.expectations if e.type not in PLAIN_EXPECTATIONS]


def _result(df: pd.DataFrame, type_: str, kwargs: dict) -> tuple[bool, dict]:
    """(success, a GX-shaped result dict) for one column-map expectation."""
    column = kwargs.get("column")
    if column not in df.columns:
        raise _CannotEvaluate(f'Error: The column "{column}" in BatchData does not exist.')
    values = df[column]
    sees_nulls = type_ == "expect_column_values_to_not_be_null"
    checked = values if sees_nulls else values[values.notna()]
    try:
        unexpected = (
            checked[PLAIN_EXPECTATIONS[type_](checked, kwargs).to_numpy(dtype=bool)] if len(checked) else checked
        )
    except TypeError as exc:  # unhashable or incomparable values
        raise _CannotEvaluate(str(exc)) from exc
    element_count, unexpected_count = len(values), len(unexpected)
    denominator = element_count if sees_nulls else len(checked)
    sample = unexpected.iloc[:PARTIAL].tolist()
    result = {
        "element_count": element_count,
        "unexpected_count": unexpected_count,
        "unexpected_percent": unexpected_count / denominator * 100 if denominator else None,
        "partial_unexpected_list": sample,
    }
    try:
        counts = sorted(Counter(sample).most_common(PARTIAL), key=lambda c: (-c[1], c[0]))
        result["partial_unexpected_counts"] = [{"value": v, "count": n} for v, n in counts]
    except TypeError:  # unhashable or unorderable values: the list alone
        pass
    mostly = kwargs.get("mostly")
    if not unexpected_count:
        success = True
    elif mostly is not None and denominator:
        success = 1 - unexpected_count / denominator >= mostly
    else:
        success = False
    return success, result


def run_plain_suite(df: pd.DataFrame, suite_name: str, suite: Suite, params: dict) -> SuiteResult:
    """Validate ``df`` against the spec suite ``suite_name`` with ``params`` substituted.

    Raises ``ValueError`` when the suite uses an expectation type this runner does not
    evaluate, and :class:`~staffml_dagster.quality.suite_results.MissingParameterError` (a
    ``KeyError``) for a missing parameter, both before looking at the data. An expectation
    that cannot be computed on the frame (a missing column, values of the wrong type) is a
    failure saying why, as in GX.
    """
    unsupported = unsupported_expectations(suite)
    if unsupported:
        raise ValueError(
            f"suite {suite_name}: expectation type(s) {', '.join(sorted(set(unsupported)))} cannot run "
            f"without Great Expectations; the per-partition check evaluates {', '.join(sorted(PLAIN_EXPECTATIONS))}"
        )
    resolved = [
        (e.type, resolve_kwargs(e.kwargs, params, suite=suite_name, expectation=e.type)) for e in suite.expectations
    ]
    failures = []
    for type_, kwargs in resolved:
        try:
            success, result = _result(df, type_, kwargs)
        except _CannotEvaluate as exc:
            failures.append(failure_line(type_, kwargs, error=str(exc)))
            continue
        if not success:
            failures.append(failure_line(type_, kwargs, result))
    return SuiteResult(
        suite=suite_name, success=not failures, blocking=suite.blocking, failures=failures, evaluated=len(resolved)
    )
