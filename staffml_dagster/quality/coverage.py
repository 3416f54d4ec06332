"""Coverage of the validated corpus: fill vs capacity per cell, balance, pictures, HTML."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from staffml_dagster.partitions import applicable_pairs
from staffml_dagster.storage.atomic import write_atomic
from staffml_dagster.storage.parquet_io import write_parquet_atomic

LEVEL_ORDER = ["L1", "L2", "L3", "L4", "L5", "L6+"]


def cv(counts: pd.Series) -> float:
    """sigma/mu (population standard deviation over mean); 0 for an empty series."""
    return float(counts.std(ddof=0) / counts.mean()) if len(counts) and counts.mean() else 0.0


def questions_per_topic(questions: pd.DataFrame, applicability: pd.DataFrame) -> pd.Series:
    """Questions per topic over every topic of the applicability matrix (0 where a topic has
    none), sorted by topic and named ``questions``: the counts whose sigma/mu (:func:`cv`) and
    largest share the balance check, the coverage report and ``staffml run``'s summary give."""
    topics = pd.Index(sorted(applicability["topic"].unique()), name="topic")
    if questions.empty:
        return pd.Series(0, index=topics, name="questions", dtype=int)
    return questions.groupby("topic").size().reindex(topics, fill_value=0).rename("questions")


@dataclass
class Coverage:
    cells: pd.DataFrame          # one row per cell: target, capacity, filled, at_capacity, overfilled
    by_topic: pd.Series
    by_track: pd.Series
    by_zone: pd.Series
    by_level: pd.Series
    partitions: pd.DataFrame     # one row per applicable (topic, track) with its count
    stats: dict


SATURATED = {"exhausted", "coverage", "novelty"}  # stop reasons that mean the cell's space is found


def coverage(corpus: pd.DataFrame, cells: pd.DataFrame, applicability: pd.DataFrame, native: pd.DataFrame | None = None,
             measured: pd.DataFrame | None = None) -> Coverage:
    """Fill per cell and balance. ``native`` (topic, track, native_item_models) says how many item
    models compute each partition's own mechanism; a partition with none is empty by design.
    ``measured`` (the cell_capacity rows) makes a measured cell's target its capacity."""
    keys = ["topic", "track", "zone", "level"]
    counts = corpus.groupby(keys).size().rename("filled") if len(corpus) else pd.Series(dtype=int, name="filled")
    table = cells[keys + ["target", "theoretical_capacity"]].merge(counts.reset_index(), on=keys, how="left") if len(cells) else pd.DataFrame(columns=keys + ["target", "theoretical_capacity", "filled"])
    table["filled"] = table["filled"].fillna(0).astype(int)
    if measured is not None and len(measured) and len(table):
        table = table.merge(measured[keys + ["capacity", "stop_reason"]], on=keys, how="left")
        table["target"] = table["capacity"].fillna(table["target"]).astype(int)
    table["at_target"] = table["filled"] >= table["target"]
    table["overfilled"] = table["filled"] > table["theoretical_capacity"]
    applicable = pd.DataFrame(applicable_pairs(applicability), columns=["topic", "track"])
    per_partition = corpus.groupby(["topic", "track"]).size().rename("questions") if len(corpus) else pd.Series(dtype=int, name="questions")
    partitions = applicable.merge(per_partition.reset_index(), on=["topic", "track"], how="left").fillna({"questions": 0})
    partitions["questions"] = partitions["questions"].astype(int)
    if native is not None:
        partitions = partitions.merge(native, on=["topic", "track"], how="left").fillna({"native_item_models": 0})
        partitions["native_item_models"] = partitions["native_item_models"].astype(int)
    by_topic = questions_per_topic(corpus, applicability)
    by_track = corpus.groupby("track").size() if len(corpus) else pd.Series(dtype=int)
    by_zone = corpus.groupby("zone").size() if len(corpus) else pd.Series(dtype=int)
    by_level = corpus.groupby("level").size().reindex(LEVEL_ORDER, fill_value=0) if len(corpus) else pd.Series(dtype=int)
    stats = {
        "questions": int(len(corpus)),
        "cells": int(len(table)),
        "completeness": float(table["at_target"].mean()) if len(table) else 0.0,
        "overfilled_cells": int(table["overfilled"].sum()),
        "empty_partitions": int((partitions["questions"] == 0).sum()),
        **({"partitions_without_native_item_model": int((partitions["native_item_models"] == 0).sum())} if native is not None else {}),
        "cv_topics": cv(by_topic),
        "cv_tracks": cv(by_track),
        "cv_zones": cv(by_zone),
        "cv_levels": cv(by_level),
        "max_topic_share": float(by_topic.max() / by_topic.sum()) if by_topic.sum() else 0.0,
    }
    if "capacity" in table:
        stats["capacity_total"] = int(table["capacity"].fillna(0).sum())
        stats["cells_measured"] = int(table["capacity"].notna().sum())
        stats["cells_saturated_share"] = float(table["stop_reason"].isin(SATURATED).sum() / len(table)) if len(table) else 0.0
    return Coverage(table, by_topic, by_track, by_zone, by_level, partitions, stats)


def heatmap_png(matrix: pd.DataFrame, title: str, width: float = 6.0) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = max(2.5, 0.16 * len(matrix.index) + 1.5)
    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    image = ax.imshow(matrix.values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=0, fontsize=8)
    ax.set_yticks(range(len(matrix.index)), [str(i) for i in matrix.index], fontsize=6 if len(matrix.index) > 20 else 8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04)
    if len(matrix.index) <= 20:
        for (i, j), v in pd.DataFrame(matrix.values).stack().items():
            ax.text(j, i, int(v), ha="center", va="center", color="w", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def topic_track_matrix(corpus: pd.DataFrame, topics: list[str], tracks: list[str]) -> pd.DataFrame:
    if corpus.empty:
        return pd.DataFrame(0, index=topics, columns=tracks)
    return corpus.pivot_table(index="topic", columns="track", values="id", aggfunc="count", fill_value=0).reindex(index=topics, columns=tracks, fill_value=0)


def zone_level_matrix(corpus: pd.DataFrame, zones: list[str]) -> pd.DataFrame:
    if corpus.empty:
        return pd.DataFrame(0, index=zones, columns=LEVEL_ORDER)
    return corpus.pivot_table(index="zone", columns="level", values="id", aggfunc="count", fill_value=0).reindex(index=zones, columns=LEVEL_ORDER, fill_value=0)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


METHOD_ESTIMATE = "12,000-14,000"  # the StaffML method's own estimate of the corpus at capacity


def capacity_sentence(stats: dict) -> str:
    """The measured corpus size beside the method's estimate, and why they differ."""
    return (
        f"Measured capacity: {stats['capacity_total']:,} distinct questions over {stats['cells_measured']:,} cells "
        f"({stats['cells_saturated_share']:.0%} saturated); the corpus holds {stats['questions']:,}. The StaffML method "
        f"estimates {METHOD_ESTIMATE} at capacity. Ours counts a question once per distinct reasoning (item model, "
        "design, outcome of its claims): the same chain of formulas with other platforms or numbers is not a new "
        "question unless the conclusion changes, and a topic holds only questions written for its own mechanism, "
        "so the capacity grows with the designs written, not with the platforms and workloads they range over."
    )


GAP_REPORT_ROWS = 100  # the report shows the first gaps in rank order; coverage_gaps.parquet holds all


def evidence_section(evidence: pd.DataFrame) -> list[str]:
    """HTML: the pairs physics admits but generation cannot serve, then every applicable pair's evidence."""
    flagged = evidence[evidence["physics_without_evidence"].astype(bool)]
    applicable = evidence[evidence["applicable"].astype(bool)]
    columns = ["topic", "track", "native_item_models", "attempts", "passed", "pass_share", "evidence", "justification"]
    table = lambda df: df[columns].assign(pass_share=df["pass_share"].map(lambda v: "" if pd.isna(v) else f"{v:.0%}")).to_html(index=False)
    return [
        "<h2>Applicability: physics and evidence</h2>",
        f"<p>{len(applicable)} of {len(evidence)} (topic, track) pairs are applicable by physics (every pair's justification "
        "names the substrates it rests on). Beside the decision, the evidence of this run: questions generated, the share "
        "that passed validation and the leading failure reasons. Evidence never changes the decision; it flags where the "
        "generator cannot follow the physics.</p>",
        f"<h3>Applicable by physics, not served by the generator ({len(flagged)})</h3>",
        table(flagged.sort_values(["topic", "track"])) if len(flagged) else "<p>none</p>",
        "<h3>Evidence per applicable pair, lowest pass share first</h3>",
        table(applicable.sort_values(["pass_share", "topic", "track"], na_position="first")),
    ]


def gaps_section(gaps: pd.DataFrame) -> list[str]:
    """HTML: the open gaps (cells below their measured capacity) in the order they are filled."""
    counts = gaps.groupby("priority").size().rename("gaps").rename_axis("priority").reset_index() if len(gaps) else pd.DataFrame(columns=["priority", "gaps"])
    return [
        f"<h2>Open gaps, most important first ({len(gaps)})</h2>",
        "<p>A gap is a cell below its measured capacity. Mastery and optimization zones come first, then the gaps of "
        "underfilled critical topics (specs/generation.yaml gap_priority, topics.yaml critical), least filled topic "
        "first; a budgeted backend generates cells in this order.</p>",
        counts.to_html(index=False),
        gaps.head(GAP_REPORT_ROWS).to_html(index=False) if len(gaps) else "<p>none</p>",
    ]


def review_kappa_table(agreement: pd.DataFrame | None) -> pd.DataFrame:
    """Per rubric criterion (rows) and comparison (gate / judge vs reviewers, among reviewers),
    the mean Cohen's kappa of the review_agreement table's round "all"."""
    from staffml_dagster.quality.agreement import RUBRIC_CRITERIA, _comparison

    if agreement is None or agreement.empty:
        return pd.DataFrame()
    rows = agreement[agreement["round"].astype(str) == "all"].copy()
    rows["comparison"] = rows["raters"].map(_comparison)
    rows = rows.dropna(subset=["comparison", "kappa"])
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index="criterion", columns="comparison", values="kappa", aggfunc="mean")
    return table.reindex([c for c in RUBRIC_CRITERIA if c in table.index])


def review_section_html(agreement: pd.DataFrame | None) -> str:
    """The coverage page's "Reviews" section, from the last review_agreement materialization."""
    head = "<h2>Reviews: does the gate agree with people?</h2>"
    if agreement is None or agreement.empty:
        return (head + "<p>No review agreement yet: export a review sheet (<code>staffml review export</code>), import the "
                "filled ones (<code>staffml review import</code>) and materialize <code>review_agreement</code>.</p>")
    table = review_kappa_table(agreement)
    if table.empty:
        return head + "<p>No pair of raters shares enough items yet.</p>"
    return (head + "<p>Mean Cohen's kappa per rubric criterion; 0.6 or more is substantial agreement. Intervals, rounds and "
            "the items raters split on: <code>review_agreement.md</code> beside this page.</p>" + table.to_html(na_rep="-", float_format=lambda v: f"{v:.2f}"))


def write_report(cov: Coverage, pictures: dict[str, bytes], directory: Path, evidence: pd.DataFrame | None = None,
                 gaps: pd.DataFrame | None = None, reviews_html: str | None = None) -> Path:
    """Write coverage.html (pictures embedded), the PNGs, the per-cell table and, when given, the
    applicability evidence, the ranked open gaps and the reviews' agreement; atomically per file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, png in pictures.items():
        write_atomic(directory / f"{name}.png", png)
    write_parquet_atomic(cov.cells, directory / "coverage_cells.parquet")
    if gaps is not None:
        write_parquet_atomic(gaps, directory / "coverage_gaps.parquet")
    stats = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:.3f}</td></tr>" if isinstance(v, float) else f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in cov.stats.items())
    under = cov.cells[~cov.cells["at_target"]].head(200)
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>StaffML corpus coverage</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style></head><body>",
        "<h1>Corpus coverage</h1><table>", stats, "</table>",
    ]
    if "capacity_total" in cov.stats:
        body.append(f"<h2>Capacity</h2><p>{html.escape(capacity_sentence(cov.stats))}</p>")
        reasons = cov.cells["stop_reason"].fillna("not measured").value_counts().rename("cells").to_frame().rename_axis("stop reason")
        body.append(reasons.to_html())
    if gaps is not None:
        body += gaps_section(gaps)
    for name, png in pictures.items():
        body.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2><img alt='{html.escape(name)}' src='{data_uri(png)}'>")
    body.append("<h2>Counts by track, zone and level</h2>")
    for label, series in (("track", cov.by_track), ("zone", cov.by_zone), ("level", cov.by_level)):
        body.append(series.rename("questions").to_frame().rename_axis(label).to_html())
    if "native_item_models" in cov.partitions:
        body.append("<h2>Partitions: questions and the native item models that serve them</h2>")
        body.append("<p>A partition whose topic has no item model computing its own mechanism stays empty: "
                    "its questions wait for that item model rather than borrowing another topic's computation.</p>")
        body.append(cov.partitions.sort_values(["native_item_models", "questions", "topic", "track"]).to_html(index=False))
    if evidence is not None:
        body += evidence_section(evidence)
    if reviews_html:
        body.append(reviews_html)
    body.append(f"<h2>Cells below target ({int((~cov.cells['at_target']).sum())})</h2>")
    body.append(under.to_html(index=False) if len(under) else "<p>none</p>")
    body.append("</body></html>")
    return write_atomic(directory / "coverage.html", "\n".join(body))


# The coverage questions a user asks of the warehouse, as DuckDB SQL over its views
# (`corpus`, `cells`, `applicability_matrix`); `staffml report` prints them and
# benchmarks/ times them over the whole corpus. Each agrees with `coverage()` above.
CELL_FILL_SQL = """
        SELECT c.topic, c.track, c.zone, c.level, c.target, c.theoretical_capacity, count(q.id) AS filled
        FROM cells c LEFT JOIN corpus q USING (topic, track, zone, level)
        GROUP BY c.topic, c.track, c.zone, c.level, c.target, c.theoretical_capacity"""
COVERAGE_SQL = {
    "cell_fill": CELL_FILL_SQL,
    "completeness": f"""
        SELECT avg(CASE WHEN filled >= target THEN 1.0 ELSE 0.0 END) AS completeness,
               sum(CASE WHEN filled > theoretical_capacity THEN 1 ELSE 0 END) AS overfilled_cells
        FROM ({CELL_FILL_SQL})""",
    "topic_balance": """
        SELECT count(*) AS topics, sum(n) AS questions, stddev_pop(n) / avg(n) AS cv_topics, max(n) / sum(n) AS max_topic_share
        FROM (SELECT a.topic, count(q.id) AS n
              FROM (SELECT DISTINCT topic FROM applicability_matrix) a LEFT JOIN corpus q USING (topic) GROUP BY ALL)""",
    "empty_partitions": """
        SELECT a.topic, a.track FROM applicability_matrix a
        WHERE a.applicable AND NOT EXISTS (SELECT 1 FROM corpus q WHERE q.topic = a.topic AND q.track = a.track)""",
    "track_zone_level": """
        SELECT track, zone, level, count(*) AS questions FROM corpus GROUP BY ALL ORDER BY ALL""",
}


def coverage_queries(con) -> dict[str, pd.DataFrame]:
    """Run every COVERAGE_SQL query on a DuckDB connection over the warehouse views."""
    return {name: con.execute(sql).df() for name, sql in COVERAGE_SQL.items()}
