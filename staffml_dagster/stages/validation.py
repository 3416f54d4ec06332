"""Every question of a partition with its verdicts on every criterion of the gate."""

import dagster as dg
import pandas as pd

from staffml_dagster.embedding import vectors_by_id
from staffml_dagster.partitions import topic_track
from staffml_dagster.progress import ProgressLog
from staffml_dagster.quality.criteria import CRITERIA, validate_questions
from staffml_dagster.quality.plain_suite import run_plain_suite
from staffml_dagster.quality.suite_results import suite_params
from staffml_dagster.resources import SpecsResource
from staffml_dagster.stages.metadata import add_partition_metadata, markdown_table, run_partition_keys

GROUP = "validation"


def verdict_metadata(df: pd.DataFrame) -> dict:
    meta = {"dagster/row_count": dg.MetadataValue.int(len(df))}
    if df.empty:
        return meta
    rates = pd.DataFrame({"criterion": CRITERIA, "pass_rate": [float(df[f"{c}_ok"].mean()) for c in CRITERIA]})
    failed = df[~df["passed"]]
    meta.update(
        {
            "passed": dg.MetadataValue.int(int(df["passed"].sum())),
            "failed": dg.MetadataValue.int(len(failed)),
            "pass_rate_by_criterion": dg.MetadataValue.md(rates.to_markdown(index=False, floatfmt=".3f")),
            "failures": dg.MetadataValue.md(
                markdown_table(
                    failed.assign(failures=failed["failures"].map("; ".join)),
                    ["id", "zone", "level", "failures"],
                    rows=20,
                    width=160,
                )
            ),
        }
    )
    return meta


@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version="1",
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def validated_questions(
    context: dg.AssetExecutionContext, specs: SpecsResource, questions: pd.DataFrame, question_embeddings: pd.DataFrame
) -> pd.DataFrame:
    """Every question of the partition with a verdict and a reason per criterion (specificity,
    grounding, falsifiability, computability, distinctness, hygiene, coherence, answer_key,
    structure, topic_fit); failures are kept with their reasons, never dropped."""
    progress = ProgressLog(
        context.log.info,
        "validated_questions",
        f"questions of {len(run_partition_keys(context)) or 1} partition(s)",
        len(questions),
    )
    df = validate_questions(
        questions, specs.load(), vectors=vectors_by_id(question_embeddings), on_row=progress.advance
    )
    meta = add_partition_metadata(context, df, lambda key, rows: verdict_metadata(rows))
    if len(run_partition_keys(context)) > 1:
        meta.update(
            {
                "partitions": dg.MetadataValue.int(len(context.partition_keys)),
                "run_row_count": dg.MetadataValue.int(len(df)),
                "run_passed": dg.MetadataValue.int(int(df["passed"].sum()) if len(df) else 0),
            }
        )
    context.add_output_metadata(meta)
    return df


@dg.asset_check(
    asset=validated_questions,
    partitions_def=topic_track,
)
def validated_questions_expectations(
    context: dg.AssetCheckExecutionContext, specs: SpecsResource, validated_questions: pd.DataFrame
) -> dg.AssetCheckResult:
    """The suite `validated_questions` (specs/quality.yaml) over the run's partitions: schema,
    closed enums, non-null fields, value ranges; evaluated in pandas the way Great Expectations
    evaluates it, with the same failure lines, so a one-partition run neither loads GX nor reads
    the other partitions (the whole-corpus suites run in GX with Data Docs)."""
    loaded = specs.load()
    suite = loaded.quality.suites["validated_questions"]
    result = run_plain_suite(validated_questions, "validated_questions", suite, suite_params(loaded))
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR if suite.blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "evaluated": result.evaluated,
            "rows_checked": dg.MetadataValue.int(len(validated_questions)),
            "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in result.failures) or "none"),
        },
    )
