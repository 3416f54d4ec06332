"""The four skills, the twelve zones derived from them, and the six levels."""

from itertools import combinations

import dagster as dg
import pandas as pd

from staffml_dagster.resources import SpecsResource
from staffml_dagster.specs import Specs
from staffml_dagster.stages.metadata import table_metadata

GROUP = "design"


def skills_table(specs: Specs) -> pd.DataFrame:
    return pd.DataFrame([s.model_dump() for s in specs.skills.skills])


def zones_table(specs: Specs) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "zone": z.id,
                "kind": z.kind,
                "skills": list(z.skills),
                "levels": list(z.levels),
                "asks": z.asks,
                "description": z.description,
            }
            for z in specs.zones
        ]
    )


def levels_table(specs: Specs) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "level": lv.id,
                "order": lv.order,
                "name": lv.name,
                "scope": lv.scope,
                "min_steps": lv.steps[0],
                "max_steps": lv.steps[1],
                "specs": lv.specs,
            }
            for lv in specs.levels.levels
        ]
    )


def zone_pair_problems(zones: pd.DataFrame, skill_ids: list[str]) -> list[str]:
    """What is wrong with the zone table: count other than 12, a pair missing or repeated."""
    problems = []
    if len(zones) != 12:
        problems.append(f"expected 12 zones, found {len(zones)}")
    pairs = [frozenset(s) for s in zones.loc[zones["kind"] == "pair", "skills"]]
    for a, b in combinations(skill_ids, 2):
        n = pairs.count(frozenset((a, b)))
        if n != 1:
            problems.append(f"skill pair {a}+{b} appears {n} times")
    return problems


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "yaml"},
    code_version="1",
    description="The four atomic skills (recall, analyze, design, quantify) from specs/skills.yaml.",
)
def skills(context: dg.AssetExecutionContext, specs: SpecsResource) -> pd.DataFrame:
    df = skills_table(specs.load())
    context.add_output_metadata(table_metadata(df))
    return df


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    code_version="1",
)
def zones(context: dg.AssetExecutionContext, specs: SpecsResource, skills: pd.DataFrame) -> pd.DataFrame:
    """The 12 zones: 4 single skills and 6 pairs derived from `skills`, plus the 2 integration zones declared in
    specs/zones.yaml, each with its level affinity.
    """
    loaded = specs.load()
    if list(skills["id"]) != [s.id for s in loaded.skills.skills]:
        raise dg.Failure(f"skills asset {list(skills['id'])} is stale against specs/skills.yaml; rematerialize skills")
    df = zones_table(loaded)
    context.add_output_metadata(table_metadata(df, ["zone", "kind", "skills", "levels", "asks"], rows=12))
    return df


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "yaml"},
    code_version="1",
    description="Levels L1-L6+: reasoning steps, scope and whether specs are given, partial or withheld.",
)
def levels(context: dg.AssetExecutionContext, specs: SpecsResource) -> pd.DataFrame:
    df = levels_table(specs.load())
    context.add_output_metadata(table_metadata(df))
    return df


@dg.asset_check(
    asset=zones,
    blocking=True,
    additional_ins={"skills": dg.AssetIn("skills")},
    description="12 zones, every skill pair exactly once.",
)
def zones_cover_every_pair(zones: pd.DataFrame, skills: pd.DataFrame) -> dg.AssetCheckResult:
    problems = zone_pair_problems(zones, list(skills["id"]))
    return dg.AssetCheckResult(
        passed=not problems, metadata={"zones": len(zones), "problems": "; ".join(problems) or "none"}
    )
