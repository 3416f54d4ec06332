"""Which (topic, track) pairs are physically meaningful, and what generation showed.

A track provides substrates; a topic requires some. A missing substrate excludes the
pair, and every pair, applicable or not, carries a justification sentence naming the
substrates it rests on. Empirical evidence (how many questions were generated for the pair
and how many passed validation) cannot feed the matrix, which is upstream of generation: it
is recorded beside it by the downstream ``applicability_evidence`` asset, never as the
decision itself, and flags the pairs physics admits but the generator cannot serve.
"""

import dagster as dg
import pandas as pd

from staffml_dagster.resources import SpecsResource
from staffml_dagster.specs import Specs
from staffml_dagster.stages.metadata import markdown_table, table_metadata

GROUP = "applicability"


def _physics(substrate_ids: list[str], specs: Specs) -> str:
    substrates = specs.tracks.substrates
    return "; ".join(f"{substrates[s].physics} ({s})" for s in substrate_ids)


def justification(
    topic_name: str, track_name: str, missing: list[str], specs: Specs, required: list[str] | None = None
) -> str:
    """The sentence that justifies a pair: the missing substrates of an exclusion, the required
    substrates the track provides for an applicable pair, or that the topic requires none."""
    if missing:
        return f"{topic_name} is excluded on {track_name} because the track lacks {_physics(missing, specs)}."
    if required:
        return f"{topic_name} applies on {track_name} because the track provides {_physics(required, specs)}."
    return (
        f"{topic_name} applies on {track_name}: it requires no substrate of tracks.yaml (requires: []), "
        "so its mechanism holds on every track from a datacenter rack to a microcontroller."
    )


def applicability_rows(specs: Specs) -> pd.DataFrame:
    rows = []
    for topic in specs.topics.topics:
        for track in specs.tracks.tracks:
            missing = [s for s in topic.requires if s not in track.provides]
            rows.append(
                {
                    "topic": topic.id,
                    "track": track.id,
                    "competency_area": topic.area,
                    "applicable": not missing,
                    "required_substrates": list(topic.requires),
                    "missing_substrates": missing,
                    "justification": justification(topic.name, track.name, missing, specs, list(topic.requires)),
                }
            )
    return pd.DataFrame(rows)


def matrix_markdown(matrix: pd.DataFrame) -> str:
    pivot = matrix.pivot(index="topic", columns="track", values="applicable").map(lambda a: "✓" if a else "·")
    return pivot.to_markdown()


def unjustified_exclusions(matrix: pd.DataFrame) -> list[str]:
    """Exclusions whose justification is empty or does not name every missing substrate."""
    bad = []
    for row in matrix[~matrix["applicable"]].itertuples():
        text = row.justification or ""
        missing = list(row.missing_substrates)
        if not missing or not text or any(s not in text for s in missing):
            bad.append(f"{row.topic}|{row.track}")
    return bad


def unjustified_inclusions(matrix: pd.DataFrame) -> list[str]:
    """Applicable pairs whose justification is empty or does not name every required substrate."""
    bad = []
    for row in matrix[matrix["applicable"]].itertuples():
        text = row.justification or ""
        if not text or any(s not in text for s in list(row.required_substrates)):
            bad.append(f"{row.topic}|{row.track}")
    return bad


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    code_version="1",
)
def applicability_matrix(
    context: dg.AssetExecutionContext, specs: SpecsResource, topics: pd.DataFrame, tracks: pd.DataFrame
) -> pd.DataFrame:
    """Topic x track applicability (86 x 4): applicable or not, the required and missing substrates, and for every pair
    a justification sentence naming the substrates it rests on (the missing physics of an exclusion, the provided
    physics of an inclusion). Generation evidence is recorded downstream, in applicability_evidence.
    """
    df = applicability_rows(specs.load())
    per_track = df.groupby("track")["applicable"].agg(["sum", "count"])
    meta = table_metadata(
        df, ["topic", "track", "missing_substrates", "justification"], rows=15, preview_of=df[~df["applicable"]]
    )
    meta.update(
        {
            "applicable_pairs": dg.MetadataValue.int(int(df["applicable"].sum())),
            "excluded_pairs": dg.MetadataValue.int(int((~df["applicable"]).sum())),
            "applicable_per_track": dg.MetadataValue.md(
                per_track.rename(columns={"sum": "applicable", "count": "topics"}).to_markdown()
            ),
            "matrix": dg.MetadataValue.md(matrix_markdown(df)),
        }
    )
    context.add_output_metadata(meta)
    return df


@dg.asset_check(
    asset=applicability_matrix,
    blocking=True,
)
def exclusions_are_justified(applicability_matrix: pd.DataFrame) -> dg.AssetCheckResult:
    """Every pair is justified by the substrates it rests on (an exclusion by the physics it lacks, an inclusion by the
    physics it needs); every topic is applicable somewhere.
    """
    bad = unjustified_exclusions(applicability_matrix) + unjustified_inclusions(applicability_matrix)
    orphan = sorted(
        set(applicability_matrix["topic"]) - set(applicability_matrix.loc[applicability_matrix["applicable"], "topic"])
    )
    return dg.AssetCheckResult(
        passed=not bad and not orphan,
        metadata={"unjustified": ", ".join(bad) or "none", "topics_applicable_nowhere": ", ".join(orphan) or "none"},
    )


# --------------------------------------------------------------------------- evidence (downstream of generation)

EVIDENCE_COLUMNS = [
    "topic",
    "track",
    "applicable",
    "justification",
    "native_item_models",
    "attempts",
    "passed",
    "pass_share",
    "leading_failures",
    "evidence",
    "physics_without_evidence",
]


def leading_failures(failures: pd.Series, top: int = 3) -> list[str]:
    """The criteria that failed most often among a pair's questions, as 'criterion (count)'. Each
    entry of ``failures`` is a question's list of 'criterion: reason' strings."""
    counts = pd.Series(
        [f.split(":", 1)[0] for row in failures for f in (list(row) if row is not None else [])], dtype=object
    ).value_counts()
    return [f"{criterion} ({n})" for criterion, n in counts.head(top).items()]


def applicability_evidence_rows(
    matrix: pd.DataFrame, validated: pd.DataFrame, native: pd.DataFrame, min_pass_share: float
) -> pd.DataFrame:
    """Per (topic, track): what generation showed beside what physics decided (plain function).

    ``validated`` holds the validated questions (``passed`` and ``failures`` per row), ``native``
    the number of native item models per pair. attempts = questions generated for the pair,
    pass_share = the share of them that passed every criterion. An applicable pair is flagged
    (``physics_without_evidence``) when the generator cannot produce valid questions for it: no
    native item model and nothing generated, nothing generated at all, or a pass share below
    ``min_pass_share``. Evidence never changes ``applicable``."""
    keys = ["topic", "track"]
    if len(validated):
        grouped = validated.groupby(keys)
        stats = grouped.agg(
            attempts=("id", "size"), passed=("passed", lambda p: int(p.astype(bool).sum()))
        ).reset_index()
        reasons = grouped["failures"].apply(leading_failures).rename("leading_failures").reset_index()
        stats = stats.merge(reasons, on=keys)
    else:
        stats = pd.DataFrame(
            {
                "topic": pd.Series(dtype=object),
                "track": pd.Series(dtype=object),
                "attempts": pd.Series(dtype=int),
                "passed": pd.Series(dtype=int),
                "leading_failures": pd.Series(dtype=object),
            }
        )
    df = matrix[keys + ["applicable", "justification"]].merge(stats, on=keys, how="left")
    df = (
        df.merge(native[keys + ["native_item_models"]], on=keys, how="left")
        if len(native)
        else df.assign(native_item_models=0)
    )
    df["native_item_models"] = df["native_item_models"].fillna(0).astype(int)
    df["attempts"] = df["attempts"].fillna(0).astype(int)
    df["passed"] = df["passed"].fillna(0).astype(int)
    df["pass_share"] = [p / a if a else float("nan") for p, a in zip(df["passed"], df["attempts"])]
    df["leading_failures"] = [list(x) if isinstance(x, list) else [] for x in df["leading_failures"]]
    texts, flags = [], []
    for r in df.itertuples():
        flag = bool(r.applicable) and (r.attempts == 0 or r.pass_share < min_pass_share)
        if not r.applicable:
            text = "not generated: excluded by physics" + (
                f"; yet {r.attempts} question(s) exist" if r.attempts else ""
            )
        elif r.attempts == 0:
            text = (
                "no native item model computes this topic's mechanism on this track, so the generator produced nothing"
                if r.native_item_models == 0
                else f"{r.native_item_models} native item model(s), but no question was generated"
            )
        else:
            text = (
                f"{r.attempts} generated from {r.native_item_models} native item model(s), "
                f"{r.passed} passed ({r.pass_share:.0%})"
                + (f"; leading failures: {', '.join(r.leading_failures)}" if r.leading_failures else "")
            )
            if r.pass_share < min_pass_share:
                text += f"; below the {min_pass_share:.0%} pass share the generator needs to serve the pair"
        texts.append(text)
        flags.append(flag)
    df["evidence"] = texts
    df["physics_without_evidence"] = flags
    return df[EVIDENCE_COLUMNS]


@dg.asset(
    group_name="corpus",
    kinds={"pandas"},
    code_version="1",
)
def applicability_evidence(
    context: dg.AssetExecutionContext,
    specs: SpecsResource,
    applicability_matrix: pd.DataFrame,
    validated_questions: pd.DataFrame,
) -> pd.DataFrame:
    """Generation evidence per (topic, track) beside the physics of applicability_matrix: questions generated
    (attempts), the share that passed validation, the leading failure reasons, the native item models; flags the pairs
    physics admits but the generator cannot produce valid questions for (none generated, or a pass share below
    quality.yaml applicability_min_pass_share). Built downstream of validation: the matrix decides, the evidence is
    recorded beside it.
    """
    from staffml_dagster.core.item_model import native_item_model_counts

    loaded = specs.load()
    native = pd.DataFrame(
        native_item_model_counts(list(zip(applicability_matrix["topic"], applicability_matrix["track"]))),
        columns=["topic", "track", "native_item_models"],
    )
    df = applicability_evidence_rows(
        applicability_matrix, validated_questions, native, loaded.quality.applicability_min_pass_share
    )
    flagged = df[df["physics_without_evidence"]]
    meta = table_metadata(
        df, ["topic", "track", "native_item_models", "attempts", "pass_share", "evidence"], rows=30, preview_of=flagged
    )
    meta.update(
        {
            "flagged_pairs": dg.MetadataValue.int(len(flagged)),
            "applicable_pairs": dg.MetadataValue.int(int(df["applicable"].sum())),
            "pairs_with_questions": dg.MetadataValue.int(int((df["attempts"] > 0).sum())),
            "low_pass_share": dg.MetadataValue.md(
                markdown_table(
                    df[df["applicable"] & (df["attempts"] > 0)].sort_values("pass_share").head(10),
                    ["topic", "track", "attempts", "passed", "pass_share", "leading_failures"],
                    rows=10,
                    width=100,
                )
            ),
        }
    )
    context.add_output_metadata(meta)
    return df
