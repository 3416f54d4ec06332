"""Reviewers in the loop: agreement between the gate, the LLM judge and people's review rounds.

Domain logic: ``quality/agreement.py`` (kappa and its intervals), ``quality/review_rounds.py``
(the reviews table, written by ``staffml review import``), ``quality/judge.py`` (the judge).
"""

import os

import dagster as dg
import pandas as pd
from pydantic import Field

from staffml_dagster.partitions import topic_track
from staffml_dagster.paths import reports_dir
from staffml_dagster.quality.agreement import AGREEMENT_COLUMNS, agreement_markdown, agreement_report
from staffml_dagster.stages.metadata import add_partition_metadata, markdown_table, run_partition_keys
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
    return (
        pd.concat(frames, ignore_index=True)[["round", *AGREEMENT_COLUMNS]]
        if frames
        else pd.DataFrame(columns=["round", *AGREEMENT_COLUMNS])
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    deps=["validated_questions", "judge_verdicts"],
    code_version="1",
)
def review_agreement(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> pd.DataFrame:
    """Inter-rater reliability per rubric criterion between the deterministic gate (its verdicts mapped onto the
    rubric), the LLM judge (when it ran) and each human reviewer (the reviews table of `staffml review import`): Cohen's
    kappa per pair, Fleiss' kappa over all, 95% bootstrap intervals, the same per review round (convergence), and the
    questions raters split on most, for the next round. Report in data/reports/review_agreement.md.
    """
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
    page.write_text(
        "# Review agreement\n\n" + ("\n".join(f"- {n}" for n in notes) + "\n\n" if notes else "") + text + "\n",
        encoding="utf-8",
    )
    rows = agreement_rows(report)
    context.add_output_metadata(
        {
            "dagster/row_count": dg.MetadataValue.int(len(rows)),
            "raters": dg.MetadataValue.text(", ".join(report.raters) or "none"),
            "agreement": dg.MetadataValue.md(text),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
            "most_disagreement": dg.MetadataValue.md(
                ", ".join(f"`{i}`" for i in report.disagreements["item"]) or "none"
            ),
            "report": dg.MetadataValue.path(str(page)),
        }
    )
    return rows


class JudgeConfig(dg.Config):
    only_passed: bool = Field(
        default=False,
        description=(
            "Judge only the questions that passed the gate "
            "(default: every validated question, so the judge is also compared with the gate's rejections)."
        ),
    )


def judge_skipped_frame() -> pd.DataFrame:
    from staffml_dagster.quality.judge import judge_frame

    return judge_frame([])


@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet", "anthropic"},
    pool="anthropic",
    code_version="1",
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def judge_verdicts(
    context: dg.AssetExecutionContext, config: JudgeConfig, validated_questions: pd.DataFrame
) -> pd.DataFrame:
    """The LLM judge: Claude scores every validated question of the partition on the review rubric (REVIEW_RUBRIC.md), a
    score and a one-line reason per criterion, through the anthropic backend's client, response cache, budget
    (STAFFML_ANTHROPIC_BUDGET_USD) and the `anthropic` pool. Without ANTHROPIC_API_KEY it is skipped with a note and an
    empty table: a verdict is never invented. Advisory, except where review_agreement shows kappa >= 0.6 with every
    reviewer and the corpus is run with use_judge.
    """
    from staffml_dagster.generation.anthropic import KEY_ENV

    rows = validated_questions
    if config.only_passed and not rows.empty:
        rows = rows[rows["passed"].astype(bool)]
    if not os.environ.get(KEY_ENV, "").strip():
        note = (
            f"skipped: {KEY_ENV} is not set, so no question was judged (nothing is faked); set it and materialize again"
        )
        context.log.warning(note)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(0),
                "note": dg.MetadataValue.text(note),
                "questions_not_judged": dg.MetadataValue.int(len(rows)),
            }
        )
        return judge_skipped_frame()
    from staffml_dagster.generation.anthropic import backend_from_env
    from staffml_dagster.quality.judge import judge_questions

    backend = backend_from_env()
    df = judge_questions(backend, rows)
    meta = {
        **add_partition_metadata(context, df, lambda key, rows: judge_metadata(rows)),
        "model": dg.MetadataValue.text(backend.model),
    }
    if len(run_partition_keys(context)) > 1:
        meta.update(
            {
                "partitions": dg.MetadataValue.int(len(context.partition_keys)),
                "run_row_count": dg.MetadataValue.int(len(df)),
                "run_cost_usd": dg.MetadataValue.float(float(df["cost_usd"].sum())),
            }
        )
    context.add_output_metadata(meta)
    return df


def judge_metadata(df: pd.DataFrame) -> dict:
    """One partition's verdicts: how many, how many readable, the pass share per criterion, the cost."""
    judged = df.dropna(subset=["staff_worthy"])
    rates = (
        {
            c: float(judged[c].mean())
            for c in ("topic_fit", "zone_fit", "grounding", "math_correct", "mistake_real", "coherent", "staff_worthy")
        }
        if len(judged)
        else {}
    )
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "judged": dg.MetadataValue.int(len(judged)),
        "unreadable_replies": dg.MetadataValue.md(
            markdown_table(df[df["error"].notna()], ["question_id", "error"], rows=20, width=160)
        ),
        "pass_share": dg.MetadataValue.md("\n".join(f"- {c}: {v:.0%}" for c, v in rates.items()) or "none judged"),
        "cost_usd": dg.MetadataValue.float(float(df["cost_usd"].sum())),
        "cached_replies": dg.MetadataValue.int(int(df["cached"].sum())),
    }
