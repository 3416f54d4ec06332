"""Tracks, topics (86 in 13 areas) and the hardware platforms of each track."""

import dagster as dg
import pandas as pd

from staffml_dagster.resources import SpecsResource
from staffml_dagster.specs import Figure, Specs, find_prerequisite_cycle
from staffml_dagster.stages.metadata import table_metadata

GROUP = "taxonomy"
EXPECTED_TOPICS = 86
EXPECTED_AREAS = 13


def _fmt(fig: Figure | None) -> str | None:
    return None if fig is None else f"{fig.value:g} {fig.unit}"


def tracks_table(specs: Specs) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "track": t.id,
                "name": t.name,
                "description": t.description,
                "provides": list(t.provides),
                "memory": _fmt(t.scale.memory),
                "compute": _fmt(t.scale.compute),
                "power": _fmt(t.scale.power),
                "latency_budget": _fmt(t.scale.latency_budget),
                "platforms": [p.id for p in specs.platforms_for(t.id)],
            }
            for t in specs.tracks.tracks
        ]
    )


def topics_table(specs: Specs) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "topic": t.id,
                "name": t.name,
                "competency_area": t.area,
                "tier": t.tier,
                "description": t.description,
                "requires": list(t.requires),
                "prerequisites": list(t.prerequisites),
                "related": list(t.related),
                "narrower": list(t.narrower),
                "architectures": list(t.architectures),
                "failure_modes": list(t.failure_modes),
                "scale_axes": list(t.scale_axes),
            }
            for t in specs.topics.topics
        ]
    )


def hardware_figures(specs: Specs) -> list[tuple[str, str, Figure | None]]:
    """Every (platform, figure name, figure) declared in hardware.yaml, flattened."""
    out: list[tuple[str, str, Figure | None]] = []
    for p in specs.hardware.platforms:
        for name in ("memory", "memory_bandwidth", "power", "idle_power", "clock", "flash", "unit_cost"):
            fig = getattr(p, name)
            if fig is not None:
                out.append((p.id, name, fig))
        out.extend((p.id, f"compute.{prec}", fig) for prec, fig in p.compute.items())
        out.extend(
            (p.id, f"{table}.{name}", fig)
            for table in ("on_chip", "geometry")
            for name, fig in getattr(p, table).items()
        )
    for ic in specs.hardware.interconnects:
        out.append((ic.id, "bandwidth", ic.bandwidth))
        if ic.latency:
            out.append((ic.id, "latency", ic.latency))
    for section in ("energy_per_op", "economics", "energy_sources"):
        out.extend(("-", f"{section}.{k}", v) for k, v in getattr(specs.hardware, section).items())
    return out


def platforms_table(specs: Specs) -> pd.DataFrame:
    rows = []
    for p in specs.hardware.platforms:
        peak = p.compute[p.default_precision]
        ridge = (peak.q / p.memory_bandwidth.q).to("op/byte").magnitude if p.memory_bandwidth else None
        rows.append(
            {
                "platform": p.id,
                "name": p.name,
                "vendor": p.vendor,
                "track": p.track,
                "kind": p.kind,
                "memory": _fmt(p.memory),
                "memory_kind": p.memory_kind,
                "memory_bandwidth": _fmt(p.memory_bandwidth),
                "peak_compute": f"{_fmt(peak)} ({p.default_precision})",
                "ridge_point_op_per_byte": None if ridge is None else round(ridge, 2),
                "power": _fmt(p.power),
                "idle_power": _fmt(p.idle_power),
                "interconnect": p.interconnect,
                "sources": sorted(
                    {f.source for f in [p.memory, p.memory_bandwidth, p.power, *p.compute.values()] if f is not None}
                ),
            }
        )
    return pd.DataFrame(rows)


def taxonomy_problems(topics: pd.DataFrame) -> list[str]:
    """Counts of topics and areas, edges to unknown topics, prerequisite cycles."""
    from staffml_dagster.specs import Topic

    problems = []
    if len(topics) != EXPECTED_TOPICS:
        problems.append(f"expected {EXPECTED_TOPICS} topics, found {len(topics)}")
    areas = topics["competency_area"].nunique()
    if areas != EXPECTED_AREAS:
        problems.append(f"expected {EXPECTED_AREAS} competency areas, found {areas}")
    known = set(topics["topic"])
    for row in topics.itertuples():
        for kind in ("prerequisites", "related", "narrower"):
            for target in getattr(row, kind):
                if target not in known:
                    problems.append(f"{row.topic}: {kind} edge to unknown topic {target}")
    graph = [Topic.model_construct(id=r.topic, prerequisites=list(r.prerequisites)) for r in topics.itertuples()]
    cycle = find_prerequisite_cycle(graph)
    if cycle:
        problems.append("prerequisite cycle " + " -> ".join(cycle))
    return problems


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "yaml"},
    code_version="1",
    description="The four tracks (cloud, edge, mobile, tinyml): the physical substrates each provides and its scale.",
)
def tracks(context: dg.AssetExecutionContext, specs: SpecsResource) -> pd.DataFrame:
    df = tracks_table(specs.load())
    context.add_output_metadata(
        table_metadata(df, ["track", "memory", "compute", "power", "latency_budget", "platforms"])
    )
    return df


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "yaml"},
    code_version="1",
)
def topics(context: dg.AssetExecutionContext, specs: SpecsResource) -> pd.DataFrame:
    """The 86 topics in 13 competency areas, with required substrates, prerequisite edges and the capacity dimensions
    (architectures, failure modes, scale axes).
    """
    df = topics_table(specs.load())
    meta = table_metadata(df, ["topic", "competency_area", "tier", "requires", "architectures"], rows=15)
    meta["topics_per_area"] = dg.MetadataValue.md(
        df.groupby("competency_area").size().rename("topics").to_frame().to_markdown()
    )
    context.add_output_metadata(meta)
    return df


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "yaml"},
    code_version="1",
)
def hardware_platforms(context: dg.AssetExecutionContext, specs: SpecsResource) -> pd.DataFrame:
    """Real hardware platforms per track with memory, bandwidth, compute per precision and power, each with unit and
    source (specs/hardware.yaml).
    """
    df = platforms_table(specs.load())
    meta = table_metadata(
        df,
        ["platform", "track", "memory", "memory_bandwidth", "peak_compute", "ridge_point_op_per_byte", "power"],
        rows=30,
    )
    meta["conventions"] = dg.MetadataValue.md("\n".join(f"- {c}" for c in specs.load().hardware.conventions))
    context.add_output_metadata(meta)
    return df


@dg.asset_check(
    asset=topics,
    blocking=True,
    description="86 topics in 13 areas; no edge to an unknown topic; no prerequisite cycle.",
)
def topics_form_a_dag(topics: pd.DataFrame) -> dg.AssetCheckResult:
    problems = taxonomy_problems(topics)
    return dg.AssetCheckResult(
        passed=not problems, metadata={"topics": len(topics), "problems": "; ".join(problems[:20]) or "none"}
    )


def figure_problems(figures: list[tuple[str, str, Figure | None]]) -> list[str]:
    """Figures that are not positive or whose unit pint cannot read."""
    bad = []
    for owner, name, fig in figures:
        try:
            if not fig.q.magnitude > 0:
                bad.append(f"{owner}.{name} is not positive")
        except ValueError as exc:
            bad.append(f"{owner}.{name}: {exc}")
    return bad


@dg.asset_check(
    asset=hardware_platforms,
    blocking=True,
    description="Every hardware figure is positive and carries a unit that pint understands.",
)
def hardware_figures_have_units(specs: SpecsResource) -> dg.AssetCheckResult:
    figures = hardware_figures(specs.load())
    bad = figure_problems(figures)
    return dg.AssetCheckResult(passed=not bad, metadata={"figures": len(figures), "problems": "; ".join(bad) or "none"})
