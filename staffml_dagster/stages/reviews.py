"""Reviewers in the loop: agreement between the gate, the LLM judge and people's review rounds.

Domain logic: ``quality/agreement.py`` (kappa and its intervals), ``quality/review_rounds.py``
(the reviews table, written by ``staffml review import``), ``quality/judge.py`` (the judge).
"""

import dagster as dg
import pandas as pd

from staffml_dagster.paths import reports_dir
from staffml_dagster.quality.agreement import AGREEMENT_COLUMNS, agreement_markdown, agreement_report
from staffml_dagster.storage import DuckDBWarehouse

GROUP = "reviews"


def _view(con, name: str) -> pd.DataFrame | None:
    if name not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}:
        return None
    return con.execute(f'SELECT * FROM "{name}"').df()


def agreement_rows(report) -> pd.DataFrame:
    """The asset's table: the overall agreement (round "all") and each round's."""
    overall = report.overall.assign(round="all")
    by_round = report.by_round.assign(round=report.by_round["round"].astype(str))
    frames = [f for f in (overall, by_round) if len(f)]
    return pd.concat(frames, ignore_index=True)[["round", *AGREEMENT_COLUMNS]] if frames else pd.DataFrame(columns=["round", *AGREEMENT_COLUMNS])


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    deps=["validated_questions", "judge_verdicts"],
    code_version="1",
    description="Inter-rater reliability per rubric criterion between the deterministic gate (its verdicts mapped onto the rubric), the LLM judge (when it ran) and each human reviewer (the reviews table of `staffml review import`): Cohen's kappa per pair, Fleiss' kappa over all, 95% bootstrap intervals, the same per review round (convergence), and the questions raters split on most, for the next round. Report in data/reports/review_agreement.md.",
)
def review_agreement(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> pd.DataFrame:
    con = warehouse.connect()
    validated = _view(con, "validated_questions")
    reviews = _view(con, "reviews")
    judge = _view(con, "judge_verdicts")
    notes = []
    if validated is None:
        notes.append("no validated_questions yet: the gate is not among the raters")
        validated = pd.DataFrame({"id": pd.Series(dtype=str)})
    if reviews is None or reviews.empty:
        notes.append("no review rounds imported yet (`staffml review export`, then `staffml review import`)")
        reviews = pd.DataFrame(columns=["question_id", "reviewer", "round"])
    if judge is None or judge.empty:
        notes.append("no judge verdicts (judge_verdicts not materialized, or skipped without ANTHROPIC_API_KEY)")
        judge = None
    report = agreement_report(validated, reviews, judge)
    text = agreement_markdown(report)
    page = reports_dir() / "review_agreement.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("# Review agreement\n\n" + ("\n".join(f"- {n}" for n in notes) + "\n\n" if notes else "") + text + "\n", encoding="utf-8")
    rows = agreement_rows(report)
    context.add_output_metadata({
        "dagster/row_count": dg.MetadataValue.int(len(rows)),
        "raters": dg.MetadataValue.text(", ".join(report.raters) or "none"),
        "agreement": dg.MetadataValue.md(text),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
        "most_disagreement": dg.MetadataValue.md(", ".join(f"`{i}`" for i in report.disagreements["item"]) or "none"),
        "report": dg.MetadataValue.path(str(page)),
    })
    return rows
