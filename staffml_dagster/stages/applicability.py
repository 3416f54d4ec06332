"""Stage 5: which (topic, track) pairs are physically meaningful.

A track provides substrates; a topic requires some. A missing substrate excludes the
pair, and the justification sentence names the missing physics. Empirical evidence
(cells whose questions keep failing validation) is recorded beside the decision as
evidence, never as the decision itself.
"""

import dagster as dg
import pandas as pd

from staffml_dagster.resources import SpecsResource
from staffml_dagster.specs import Specs
from staffml_dagster.stages.metadata import table_metadata

GROUP = "applicability"

def justification(topic_name: str, track_name: str, missing: list[str], specs: Specs) -> str:
    substrates = specs.tracks.substrates
    physics = "; ".join(f"{substrates[s].physics} ({s})" for s in missing)
    return f"{topic_name} is excluded on {track_name} because the track lacks {physics}."

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
                    "missing_substrates": missing,
                    "justification": justification(topic.name, track.name, missing, specs) if missing else "",
                    "evidence": "",
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

@dg.asset(group_name=GROUP, kinds={"pandas"}, code_version="1",
          description="Topic x track applicability (86 x 4): applicable or not, the missing substrates, and a justification sentence naming the missing physics for every exclusion.")
def applicability_matrix(context: dg.AssetExecutionContext, specs: SpecsResource, topics: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    df = applicability_rows(specs.load())
    per_track = df.groupby("track")["applicable"].agg(["sum", "count"])
    meta = table_metadata(df[~df["applicable"]], ["topic", "track", "missing_substrates", "justification"], rows=15)
    meta.update(
        {
            "applicable_pairs": dg.MetadataValue.int(int(df["applicable"].sum())),
            "excluded_pairs": dg.MetadataValue.int(int((~df["applicable"]).sum())),
            "applicable_per_track": dg.MetadataValue.md(per_track.rename(columns={"sum": "applicable", "count": "topics"}).to_markdown()),
            "matrix": dg.MetadataValue.md(matrix_markdown(df)),
        }
    )
    context.add_output_metadata(meta)
    return df

@dg.asset_check(asset=applicability_matrix, blocking=True, description="Every exclusion is justified by the physics it lacks; every topic is applicable somewhere.")
def exclusions_are_justified(applicability_matrix: pd.DataFrame) -> dg.AssetCheckResult:
    bad = unjustified_exclusions(applicability_matrix)
    orphan = sorted(set(applicability_matrix["topic"]) - set(applicability_matrix.loc[applicability_matrix["applicable"], "topic"]))
    return dg.AssetCheckResult(
        passed=not bad and not orphan,
        metadata={"unjustified": ", ".join(bad) or "none", "topics_applicable_nowhere": ", ".join(orphan) or "none"},
    )
