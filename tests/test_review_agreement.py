"""The review_agreement asset: gate, judge and reviewers compared per criterion and per round."""

import dagster as dg
import pandas as pd
import pytest

from staffml_dagster.quality.agreement import RUBRIC_CRITERIA, agreement_markdown, agreement_report
from staffml_dagster.stages.reviews import review_agreement
from staffml_dagster.storage import DuckDBWarehouse, HiveParquetIOManager

IDS = [f"q{i:02d}" for i in range(16)]
TRUTH = [i % 4 != 0 for i in range(16)]  # what a careful reviewer finds on topic_fit


def validated() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": IDS,
            "topic_fit_ok": TRUTH,
            "coherence_ok": [True] * 16,
            "passed": [True] * 16,
            "topic": "kv-cache-management",
            "track": "cloud",
        }
    )


def reviews() -> pd.DataFrame:
    rows = []
    for rnd, flips in ((1, {1, 2, 3}), (2, {1})):
        for reviewer, noisy in (("ana", False), ("ben", True)):
            for i, (q, t) in enumerate(zip(IDS, TRUTH)):
                score = int(t) if not (noisy and i in flips) else 1 - int(t)
                row = {
                    "question_id": q,
                    "reviewer": reviewer,
                    "round": rnd,
                    "source": "corpus",
                    "sheet": "s",
                    **{c: 1 for c in RUBRIC_CRITERIA},
                    "template_smell": 1,
                    "reasons": "{}",
                    "file": "f",
                    "imported_at": "t",
                }
                row["topic_fit"] = score
                row["staff_worthy"] = score
                rows.append(row)
    return pd.DataFrame(rows)


def judge() -> pd.DataFrame:
    return pd.DataFrame(
        {"question_id": IDS, **{c: [1] * 16 for c in RUBRIC_CRITERIA}, "topic_fit": [int(t) for t in TRUTH]}
    )


def test_report_covers_every_comparison_and_convergence():
    report = agreement_report(validated(), reviews(), judge(), resamples=200)
    topic = report.overall[report.overall["criterion"] == "topic_fit"].set_index("raters")
    assert topic.loc["gate vs judge", "kappa"] == pytest.approx(1.0)
    assert topic.loc["gate vs human:ana", "kappa"] == pytest.approx(1.0)
    assert topic.loc["human:ana vs human:ben", "kappa"] < 1.0  # ben's round 2 still flips q01
    assert topic.loc["all (gate, judge, human:ana, human:ben)", "method"] == "fleiss"
    conv = report.convergence[
        (report.convergence["criterion"] == "topic_fit") & (report.convergence["comparison"] == "among reviewers")
    ]
    assert list(conv["round"]) == [1, 2] and conv["kappa"].iloc[1] > conv["kappa"].iloc[0]
    assert report.disagreements.loc[0, "item"] == "q01"
    text = agreement_markdown(report)
    assert "| topic_fit | gate vs human:ana | cohen | 16 | 1.00 |" in text
    assert "| among reviewers | topic_fit |" in text and "round 2" in text


def test_asset_reads_the_warehouse_and_writes_the_report(warehouse):
    part = warehouse / "validated_questions" / "topic=kv-cache-management" / "track=cloud"
    part.mkdir(parents=True)
    validated().drop(columns=["topic", "track"]).to_parquet(part / "part.parquet", index=False)
    (warehouse / "reviews").mkdir()
    reviews().to_parquet(warehouse / "reviews" / "part.parquet", index=False)

    result = dg.materialize(
        [review_agreement], resources={"warehouse": DuckDBWarehouse(), "io_manager": HiveParquetIOManager()}
    )
    assert result.success
    meta = result.asset_materializations_for_node("review_agreement")[0].metadata
    assert meta["raters"].value == "gate, human:ana, human:ben"
    assert "judge_verdicts not materialized" in meta["notes"].value
    assert "gate vs human:ben" in meta["agreement"].value
    stored = pd.read_parquet(warehouse / "review_agreement" / "part.parquet")
    assert set(stored["round"]) == {"all", "1", "2"}
    assert (warehouse.parent / "reports" / "review_agreement.md").read_text().startswith("# Review agreement")


def test_asset_without_reviews_says_what_to_do(warehouse):
    result = dg.materialize(
        [review_agreement], resources={"warehouse": DuckDBWarehouse(), "io_manager": HiveParquetIOManager()}
    )
    assert result.success
    meta = result.asset_materializations_for_node("review_agreement")[0].metadata
    assert "staffml review export" in meta["agreement"].value
    assert meta["dagster/row_count"].value == 0
