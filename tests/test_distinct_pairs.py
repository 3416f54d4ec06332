"""Distinct means different reasoning, shown on hand-labelled pairs.

``benchmarks/distinct_pairs/pairs.jsonl`` holds 48 pairs of rendered questions labelled
same/different by an interviewer who saw only the texts: the same design at another setting
(numbers-only or platform-only variants), the same design whose conclusion flips, two designs
of one item model, two item models of one topic, and wording-only rewrites. The reasoning key
the offline generator fills cells and measures capacity with (item model | design | outcome of
the claims that decide the conclusion, not of ``remarks``) must agree with every label."""

import json
from pathlib import Path

import pytest

PAIRS = Path(__file__).resolve().parents[1] / "benchmarks" / "distinct_pairs" / "pairs.jsonl"
ROWS = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]


def _reasoning(q, specs):
    from benchmarks.distinct_pairs.label import reasoning

    return reasoning(q)


def test_the_labelled_set_covers_every_kind_of_variant():
    kinds = {(r["kind"], r["label"]) for r in ROWS}
    assert {
        ("wording-only variant", "same"),
        ("same design, same outcomes, other setting", "same"),
        ("same design, other claim outcome", "different"),
        ("two designs of one item model", "different"),
        ("two item models of one topic", "different"),
    } <= kinds
    other_setting = [r for r in ROWS if r["kind"] == "same design, same outcomes, other setting"]
    assert any(
        r["a"]["setting"].split("|")[0] != r["b"]["setting"].split("|")[0] for r in other_setting
    )  # platform-only
    assert any(
        r["a"]["setting"].split("|")[0] == r["b"]["setting"].split("|")[0] for r in other_setting
    )  # numbers-only


@pytest.mark.parametrize("row", ROWS, ids=[f"pair-{r['pair']}" for r in ROWS])
def test_reasoning_key_agrees_with_the_label(specs, row):
    same = _reasoning(row["a"], specs) == _reasoning(row["b"], specs)
    assert same == (row["label"] == "same"), (
        f"pair {row['pair']} ({row['kind']}): labelled {row['label']} because {row['reason']}"
    )
