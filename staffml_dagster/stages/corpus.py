"""The validated corpus, its blocking balance checks and its coverage report."""

import os

import dagster as dg
import pandas as pd
from pydantic import Field

from staffml_dagster.partitions import applicable_pairs
from staffml_dagster.paths import reports_dir
from staffml_dagster.quality.coverage import (
    capacity_sentence,
    coverage,
    data_uri,
    heatmap_png,
    inapplicable_matrix,
    overview_section,
    questions_per_topic,
    review_section_html,
    topic_track_matrix,
    write_report,
    zone_level_matrix,
)
from staffml_dagster.quality.criteria import VERDICT_COLUMNS, repeated_computations
from staffml_dagster.resources import SpecsResource
from staffml_dagster.stages.metadata import markdown_table, table_metadata
from staffml_dagster.storage import DuckDBWarehouse

GROUP = "corpus"
JUDGE_GATE_ENV = "STAFFML_JUDGE_GATE"


class CorpusConfig(dg.Config):
    use_judge: bool | None = Field(
        default=None,
        description=(
            "Let the LLM judge block questions on the criteria where review_agreement shows kappa >= 0.6 with every "
            f"reviewer (unset: {JUDGE_GATE_ENV}=1 where the run executes, else advisory)."
        ),
    )

    def judge_gate(self) -> bool:
        """Whether the judge may block: the run config's choice, else the environment of the run's process."""
        return self.use_judge if self.use_judge is not None else os.environ.get(JUDGE_GATE_ENV, "") == "1"


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version="1",
)
def corpus(
    context: dg.AssetExecutionContext,
    config: CorpusConfig,
    validated_questions: pd.DataFrame,
    warehouse: DuckDBWarehouse,
) -> pd.DataFrame:
    """The corpus: every question that passed all criteria, across all partitions; with use_judge (or
    STAFFML_JUDGE_GATE=1), minus those the LLM judge fails on a criterion where review_agreement shows it agrees with
    every reviewer at kappa >= 0.6 (metadata `judge` says which).
    """
    df = passed_questions(validated_questions)
    df, judge_note = apply_judge_gate(df, warehouse.connect() if config.judge_gate() else None)
    meta = table_metadata(df, ["id", "topic", "track", "zone", "level", "title"])
    meta["rejected"] = dg.MetadataValue.int(len(validated_questions) - len(df))
    meta["judge"] = dg.MetadataValue.md(judge_note)
    context.add_output_metadata(meta)
    return df


def apply_judge_gate(df: pd.DataFrame, con) -> tuple[pd.DataFrame, str]:
    """Drop the questions the judge fails on a criterion it is trusted on (kappa >= 0.6 with
    every reviewer in the last review_agreement); ``con`` None: the judge is advisory."""
    from staffml_dagster.quality.judge import TRUST_THRESHOLD, judge_blocks, trusted_criteria

    if con is None:
        return (
            df,
            f"advisory: the corpus is not run with use_judge (or {JUDGE_GATE_ENV}=1); "
            "judge verdicts are recorded in judge_verdicts only",
        )
    views = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    judge = con.execute("SELECT * FROM judge_verdicts").df() if "judge_verdicts" in views else None
    agreement = con.execute("SELECT * FROM review_agreement").df() if "review_agreement" in views else None
    trusted = trusted_criteria(agreement)
    if not trusted:
        return df, (
            f"advisory: use_judge is set, but no criterion has the judge at kappa >= {TRUST_THRESHOLD} "
            "with every reviewer "
            "in review_agreement (materialize judge_verdicts, import review rounds, then review_agreement)"
        )
    blocked = judge_blocks(df, judge, trusted)
    kept = df[~df["id"].astype(str).isin(set(blocked["id"]))].reset_index(drop=True)
    lines = [
        f"blocks on {', '.join(trusted)} ({'; '.join(f'{c}: {why}' for c, why in trusted.items())}); "
        "other criteria advisory.",
        f"{len(blocked)} question(s) removed:",
    ]
    lines += [f"- `{r.id}`: {'; '.join(r.judge_failures)}" for r in blocked.head(30).itertuples()]
    return kept, "\n".join(lines)


def passed_questions(validated: pd.DataFrame) -> pd.DataFrame:
    """The questions that passed every criterion, without their verdict columns."""
    if validated.empty:
        return validated
    df = validated[validated["passed"].astype(bool)]
    return df.drop(columns=[c for c in VERDICT_COLUMNS if c in df.columns]).reset_index(drop=True)


def _corpus_suite_frames(corpus: pd.DataFrame, applicability: pd.DataFrame):
    per_topic = questions_per_topic(corpus, applicability).reset_index()
    applicable = pd.DataFrame(applicable_pairs(applicability), columns=["topic", "track"])
    counts = (
        corpus.groupby(["topic", "track"]).size().rename("questions").reset_index()
        if len(corpus)
        else pd.DataFrame(columns=["topic", "track", "questions"])
    )
    per_partition = applicable.merge(counts, on=["topic", "track"], how="left").fillna({"questions": 0})
    return per_topic, per_partition


def corpus_check_result(
    name: str, frame: pd.DataFrame, specs, params: dict, at_fault: list[str]
) -> dg.AssetCheckResult:
    from staffml_dagster.quality.expectations import (
        run_suite,
        suite_params,
    )  # Great Expectations takes seconds to import

    suite = specs.quality.suites[name]
    result = run_suite(frame, name, suite, {**suite_params(specs), **params}, docs_dir=reports_dir() / "gx")
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR if suite.blocking else dg.AssetCheckSeverity.WARN,
        description=None
        if result.success
        else f"{name} failed; at fault: {', '.join(at_fault[:20]) or 'see failures'}",
        metadata={
            "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in result.failures) or "none"),
            "at_fault": dg.MetadataValue.md("\n".join(f"- {x}" for x in at_fault[:50]) or "none"),
            "data_docs": dg.MetadataValue.path(str(result.results_page)) if result.results_page else "not written",
            "gx_data_docs": dg.MetadataValue.path(str(result.docs_path)) if result.docs_path else "not written",
        },
    )


@dg.asset_check(
    asset=corpus,
    blocking=True,
    additional_ins={"applicability_matrix": dg.AssetIn("applicability_matrix")},
)
def corpus_is_balanced(
    specs: SpecsResource, corpus: pd.DataFrame, applicability_matrix: pd.DataFrame
) -> dg.AssetCheckResult:
    """Balance across topics: sigma/mu below specs/quality.yaml balance_max_cv and no topic above max_topic_share of the
    corpus.
    """
    loaded = specs.load()
    per_topic, _ = _corpus_suite_frames(corpus, applicability_matrix)
    mean, total = float(per_topic["questions"].mean()), float(per_topic["questions"].sum())
    limit = loaded.quality.max_topic_share * total
    over = per_topic[per_topic["questions"] > limit]
    low = per_topic[per_topic["questions"] < mean / 2]
    at_fault = [f"{r.topic}: {r.questions} questions (> {limit:.0f})" for r in over.itertuples()] + [
        f"{r.topic}: {r.questions} questions (under half the mean {mean:.0f})" for r in low.itertuples()
    ]
    params = {
        "max_topic_stdev": loaded.quality.balance_max_cv * mean,
        "max_topic_count": limit,
        "topic_count": len(loaded.topics.topics),
    }
    return corpus_check_result("corpus_topics", per_topic, loaded, params, at_fault)


@dg.asset_check(asset=corpus, blocking=True, description="Every zone and every level is populated.")
def corpus_covers_zones(specs: SpecsResource, corpus: pd.DataFrame) -> dg.AssetCheckResult:
    loaded = specs.load()
    present = set(corpus["zone"]) if len(corpus) else set()
    missing = [z.id for z in loaded.zones if z.id not in present]
    frame = (
        corpus[["zone", "level"]]
        if len(corpus)
        else pd.DataFrame({"zone": pd.Series(dtype=str), "level": pd.Series(dtype=str)})
    )
    return corpus_check_result("corpus_zones", frame, loaded, {}, [f"zone {z} has no question" for z in missing])


@dg.asset_check(
    asset=corpus,
    blocking=True,
    additional_ins={"applicability_matrix": dg.AssetIn("applicability_matrix")},
    description="Every applicable (topic, track) partition has at least one validated question.",
)
def corpus_fills_partitions(
    specs: SpecsResource, corpus: pd.DataFrame, applicability_matrix: pd.DataFrame
) -> dg.AssetCheckResult:
    loaded = specs.load()
    _, per_partition = _corpus_suite_frames(corpus, applicability_matrix)
    from staffml_dagster.core.item_model import models_for_topic

    empty = [
        f"{r.topic}|{r.track}" + ("" if models_for_topic(r.topic, r.track) else " (no native item model yet)")
        for r in per_partition.itertuples()
        if r.questions == 0
    ]
    return corpus_check_result("corpus_partitions", per_partition, loaded, {}, empty)


@dg.asset_check(
    asset=corpus,
    blocking=False,
)
def computation_unique_across_topics(corpus: pd.DataFrame) -> dg.AssetCheckResult:
    """The same computation (item model, framing, platforms, workload, scale point) does not reappear under another
    topic of the track (a question is native to its topic: assets/item_models/README.md).
    """
    repeats = repeated_computations(corpus)
    pairs = (
        repeats.groupby(["repeats_topic", "topic"]).size().sort_values(ascending=False)
        if len(repeats)
        else pd.Series(dtype=int)
    )
    return dg.AssetCheckResult(
        passed=repeats.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if repeats.empty
        else f"{len(repeats)} question(s) repeat a computation already asked under another topic",
        metadata={
            "repeats": dg.MetadataValue.int(len(repeats)),
            "topic_pairs": dg.MetadataValue.md(
                "\n".join(f"- {a} -> {b}: {n}" for (a, b), n in pairs.head(20).items()) or "none"
            ),
            "examples": dg.MetadataValue.md(
                markdown_table(
                    repeats,
                    ["id", "topic", "repeats_topic", "item_model", "framing", "platforms", "workload", "scale_point"],
                    rows=20,
                    width=60,
                )
            ),
        },
    )


def gaps_metadata(gaps: pd.DataFrame) -> dict:
    """The ranked gap table as the UI shows it: counts per priority group and the first gaps."""
    from staffml_dagster.quality.gaps import PRIORITY_NAMES

    counts = (
        gaps.groupby("priority").agg(gaps=("rank", "size"), missing=("missing", "sum"))
        if len(gaps)
        else pd.DataFrame(columns=["gaps", "missing"])
    )
    counts.index = [PRIORITY_NAMES.get(int(p), str(p)) for p in counts.index]
    return {
        "dagster/row_count": dg.MetadataValue.int(len(gaps)),
        "missing_questions": dg.MetadataValue.int(int(gaps["missing"].sum()) if len(gaps) else 0),
        "gaps_by_priority": dg.MetadataValue.md(
            counts.rename_axis("priority").to_markdown() if len(counts) else "no open gap"
        ),
        "ranked_gaps": dg.MetadataValue.md(
            markdown_table(
                gaps, ["rank", "topic", "track", "zone", "level", "target", "filled", "missing", "why"], rows=40
            )
        ),
    }


def open_gap_rows(
    loaded,
    validated_questions: pd.DataFrame,
    cells: pd.DataFrame,
    applicability_matrix: pd.DataFrame,
    cell_capacity: pd.DataFrame,
) -> pd.DataFrame:
    """The ranked open gaps of the validated corpus against the measured capacity."""
    from staffml_dagster.quality.gaps import gap_priority, rank_gaps

    cov = coverage(passed_questions(validated_questions), cells, applicability_matrix, measured=cell_capacity)
    critical, zones = gap_priority(loaded)
    return rank_gaps(cov.cells, critical, zones)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    code_version="1",
)
def open_gaps(
    context: dg.AssetExecutionContext,
    specs: SpecsResource,
    validated_questions: pd.DataFrame,
    cells: pd.DataFrame,
    applicability_matrix: pd.DataFrame,
    cell_capacity: pd.DataFrame,
) -> pd.DataFrame:
    """The open gaps (cells whose validated questions are below their measured capacity), ranked most important first:
    mastery and optimization zones, then underfilled critical topics (specs/generation.yaml gap_priority, topics.yaml
    critical), least filled topic first. A budgeted backend generates cells in this order.
    """
    gaps = open_gap_rows(specs.load(), validated_questions, cells, applicability_matrix, cell_capacity)
    context.add_output_metadata(gaps_metadata(gaps))
    return gaps


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "html"},
    code_version="1",
)
def coverage_report(
    context: dg.AssetExecutionContext,
    specs: SpecsResource,
    validated_questions: pd.DataFrame,
    cells: pd.DataFrame,
    applicability_matrix: pd.DataFrame,
    cell_capacity: pd.DataFrame,
    applicability_evidence: pd.DataFrame,
    open_gaps: pd.DataFrame,
    warehouse: DuckDBWarehouse,
) -> pd.DataFrame:
    """Coverage of the validated questions: fill vs target and capacity per cell; counts by topic, track, zone and
    level; sigma/mu; completeness; overfilled cells; the native item models serving each partition; the ranked open
    gaps; the applicability evidence and the pairs physics admits but the generator cannot serve. Heatmaps in metadata
    and in data/reports/coverage.html. Reads validated_questions, so it reports also when a blocking corpus check stops
    the release. A Reviews section gives the gate's, the judge's and the reviewers' agreement with the reviewers per
    rubric criterion (from the last review_agreement).
    """
    from staffml_dagster.core.item_model import native_item_model_counts

    loaded = specs.load()
    corpus = passed_questions(validated_questions)
    native = pd.DataFrame(
        native_item_model_counts(applicable_pairs(applicability_matrix)),
        columns=["topic", "track", "native_item_models"],
    )
    cov = coverage(corpus, cells, applicability_matrix, native, cell_capacity)
    by_area = sorted(
        loaded.topics.topics, key=lambda t: list(loaded.topics.areas).index(t.area)
    )  # stable: spec order within an area
    topics = [t.id for t in by_area]
    tracks = [t.id for t in loaded.tracks.tracks]
    pictures = {
        "topic_x_track": heatmap_png(
            topic_track_matrix(corpus, topics, tracks),
            "validated questions per topic x track (grey: not applicable)",
            width=7,
            greyed=inapplicable_matrix(applicability_matrix, topics, tracks),
            groups=[t.area for t in by_area],
        ),
        "zone_x_level": heatmap_png(
            zone_level_matrix(corpus, [z.id for z in loaded.zones]), "validated questions per zone x level", width=6
        ),
    }
    con = warehouse.connect()
    agreement = (
        con.execute("SELECT * FROM review_agreement").df()
        if "review_agreement" in {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        else None
    )
    overview = overview_section(
        cov,
        applicability_matrix,
        [(t.id, t.name, t.area) for t in loaded.topics.topics],
        [(t.id, t.name) for t in loaded.tracks.tracks],
        list(loaded.topics.areas),
        [z.id for z in loaded.zones],
        loaded.quality.balance_max_cv,
        loaded.quality.max_topic_share,
    )
    page = write_report(
        cov,
        pictures,
        reports_dir(),
        evidence=applicability_evidence,
        gaps=open_gaps,
        reviews_html=review_section_html(agreement),
        overview_html=overview,
    )
    stats_md = "\n".join(
        f"- **{k}**: {v:.3f}" if isinstance(v, float) else f"- **{k}**: {v}" for k, v in cov.stats.items()
    )
    meta = table_metadata(cov.cells, ["topic", "track", "zone", "level", "target", "theoretical_capacity", "filled"])
    meta.update(
        {
            "stats": dg.MetadataValue.md(
                stats_md + (f"\n\n{capacity_sentence(cov.stats)}" if "capacity_total" in cov.stats else "")
            ),
            "sigma_over_mu_topics": dg.MetadataValue.float(cov.stats["cv_topics"]),
            "completeness": dg.MetadataValue.float(cov.stats["completeness"]),
            "zone_x_level_heatmap": dg.MetadataValue.md(f"![zone x level]({data_uri(pictures['zone_x_level'])})"),
            "topic_x_track_heatmap": dg.MetadataValue.md(f"![topic x track]({data_uri(pictures['topic_x_track'])})"),
            "open_gaps": dg.MetadataValue.int(len(open_gaps)),
            "applicable_pairs_not_served": dg.MetadataValue.int(
                int(applicability_evidence["physics_without_evidence"].sum())
            ),
            "report": dg.MetadataValue.path(str(page)),
        }
    )
    context.add_output_metadata(meta)
    return cov.cells
