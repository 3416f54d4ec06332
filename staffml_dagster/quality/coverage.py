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
    cells: pd.DataFrame  # one row per cell: target, capacity, filled, at_capacity, overfilled
    by_topic: pd.Series
    by_track: pd.Series
    by_zone: pd.Series
    by_level: pd.Series
    partitions: pd.DataFrame  # one row per applicable (topic, track) with its count
    stats: dict


SATURATED = {"exhausted", "coverage", "novelty"}  # stop reasons that mean the cell's space is found


def coverage(
    corpus: pd.DataFrame,
    cells: pd.DataFrame,
    applicability: pd.DataFrame,
    native: pd.DataFrame | None = None,
    measured: pd.DataFrame | None = None,
) -> Coverage:
    """Fill per cell and balance. ``native`` (topic, track, native_item_models) says how many item
    models compute each partition's own mechanism; a partition with none is empty by design.
    ``measured`` (the cell_capacity rows) makes a measured cell's target its capacity."""
    keys = ["topic", "track", "zone", "level"]
    counts = corpus.groupby(keys).size().rename("filled") if len(corpus) else pd.Series(dtype=int, name="filled")
    table = (
        cells[keys + ["target", "theoretical_capacity"]].merge(counts.reset_index(), on=keys, how="left")
        if len(cells)
        else pd.DataFrame(columns=keys + ["target", "theoretical_capacity", "filled"])
    )
    table["filled"] = table["filled"].fillna(0).astype(int)
    if measured is not None and len(measured) and len(table):
        table = table.merge(measured[keys + ["capacity", "stop_reason"]], on=keys, how="left")
        table["target"] = table["capacity"].fillna(table["target"]).astype(int)
    table["at_target"] = table["filled"] >= table["target"]
    table["overfilled"] = table["filled"] > table["theoretical_capacity"]
    applicable = pd.DataFrame(applicable_pairs(applicability), columns=["topic", "track"])
    per_partition = (
        corpus.groupby(["topic", "track"]).size().rename("questions")
        if len(corpus)
        else pd.Series(dtype=int, name="questions")
    )
    partitions = applicable.merge(per_partition.reset_index(), on=["topic", "track"], how="left").fillna(
        {"questions": 0}
    )
    partitions["questions"] = partitions["questions"].astype(int)
    if native is not None:
        partitions = partitions.merge(native, on=["topic", "track"], how="left").fillna({"native_item_models": 0})
        partitions["native_item_models"] = partitions["native_item_models"].astype(int)
    by_topic = questions_per_topic(corpus, applicability)
    by_track = corpus.groupby("track").size() if len(corpus) else pd.Series(dtype=int)
    by_zone = corpus.groupby("zone").size() if len(corpus) else pd.Series(dtype=int)
    by_level = (
        corpus.groupby("level").size().reindex(LEVEL_ORDER, fill_value=0) if len(corpus) else pd.Series(dtype=int)
    )
    stats = {
        "questions": int(len(corpus)),
        "cells": int(len(table)),
        "completeness": float(table["at_target"].mean()) if len(table) else 0.0,
        "overfilled_cells": int(table["overfilled"].sum()),
        "empty_partitions": int((partitions["questions"] == 0).sum()),
        **(
            {"partitions_without_native_item_model": int((partitions["native_item_models"] == 0).sum())}
            if native is not None
            else {}
        ),
        "cv_topics": cv(by_topic),
        "cv_tracks": cv(by_track),
        "cv_zones": cv(by_zone),
        "cv_levels": cv(by_level),
        "max_topic_share": float(by_topic.max() / by_topic.sum()) if by_topic.sum() else 0.0,
    }
    if "capacity" in table:
        stats["capacity_total"] = int(table["capacity"].fillna(0).sum())
        stats["cells_measured"] = int(table["capacity"].notna().sum())
        stats["cells_saturated_share"] = (
            float(table["stop_reason"].isin(SATURATED).sum() / len(table)) if len(table) else 0.0
        )
    return Coverage(table, by_topic, by_track, by_zone, by_level, partitions, stats)


def heatmap_png(
    matrix: pd.DataFrame,
    title: str,
    width: float = 6.0,
    greyed: pd.DataFrame | None = None,
    groups: list[str] | None = None,
) -> bytes:
    """A count heatmap for the asset's metadata, column labels on top and every count written in
    its cell; ``greyed`` (same shape, True where a pair does not apply) draws those pairs grey
    instead of as zero; ``groups`` (one label per row, rows of a group adjacent, e.g. the
    competency area of each topic) separates the groups by a line and names each on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    height = max(2.5, 0.2 * len(matrix.index) + 1.5)
    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    values = matrix.values.astype(float)
    mask = np.zeros(values.shape, dtype=bool)
    if greyed is not None:
        mask = greyed.reindex(index=matrix.index, columns=matrix.columns, fill_value=False).values.astype(bool)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d0d0d0")
    image = ax.imshow(np.ma.masked_where(mask, values), aspect="auto", cmap=cmap)
    ax.xaxis.tick_top()
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=0, fontsize=9)
    ax.set_yticks(range(len(matrix.index)), [str(i) for i in matrix.index], fontsize=7 if len(matrix.index) > 20 else 8)
    ax.set_title(title, fontsize=10, pad=22)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.2 if groups else 0.05)
    top = np.nanmax(values) if values.size else 0
    for (i, j), v in np.ndenumerate(values):
        text = "n/a" if mask[i, j] else str(int(v))
        colour = "#555" if mask[i, j] else ("k" if top and v > 0.6 * top else "w")
        ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=6.5)
    if groups:
        starts = [i for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
        for k, start in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(groups)
            if start:
                ax.axhline(start - 0.5, color="white", linewidth=2)
            ax.text(
                len(matrix.columns) - 0.4,
                (start + end - 1) / 2,
                groups[start],
                ha="left",
                va="center",
                fontsize=8,
                fontweight="bold",
            )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def inapplicable_matrix(applicability: pd.DataFrame, topics: list[str], tracks: list[str]) -> pd.DataFrame:
    """True where a (topic, track) pair is not applicable by physics (rows topics, columns tracks)."""
    applies = applicability.pivot_table(index="topic", columns="track", values="applicable", aggfunc="any")
    return ~applies.reindex(index=topics, columns=tracks).fillna(False).astype(bool)


def topic_track_matrix(corpus: pd.DataFrame, topics: list[str], tracks: list[str]) -> pd.DataFrame:
    if corpus.empty:
        return pd.DataFrame(0, index=topics, columns=tracks)
    return corpus.pivot_table(index="topic", columns="track", values="id", aggfunc="count", fill_value=0).reindex(
        index=topics, columns=tracks, fill_value=0
    )


def zone_level_matrix(corpus: pd.DataFrame, zones: list[str]) -> pd.DataFrame:
    if corpus.empty:
        return pd.DataFrame(0, index=zones, columns=LEVEL_ORDER)
    return corpus.pivot_table(index="zone", columns="level", values="id", aggfunc="count", fill_value=0).reindex(
        index=zones, columns=LEVEL_ORDER, fill_value=0
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


METHOD_ESTIMATE = "12,000-14,000"  # the StaffML method's own estimate of the corpus at capacity


def capacity_sentence(stats: dict) -> str:
    """The measured corpus size beside the method's estimate, and why they differ."""
    return (
        f"Measured capacity: {stats['capacity_total']:,} distinct questions over {stats['cells_measured']:,} cells "
        f"({stats['cells_saturated_share']:.0%} saturated); the corpus holds {stats['questions']:,}. The StaffML "
        f"method estimates {METHOD_ESTIMATE} at capacity. Ours counts a question once per distinct reasoning (item "
        "model, design, outcome of its claims): the same chain of formulas with other platforms or numbers is not a "
        "new question unless the conclusion changes, and a topic holds only questions written for its own mechanism, "
        "so the capacity grows with the designs written, not with the platforms and workloads they range over."
    )


GAP_REPORT_ROWS = 100  # the report shows the first gaps in rank order; coverage_gaps.parquet holds all


def evidence_section(evidence: pd.DataFrame) -> list[str]:
    """HTML: the pairs physics admits but generation cannot serve, then every applicable pair's evidence."""
    flagged = evidence[evidence["physics_without_evidence"].astype(bool)]
    applicable = evidence[evidence["applicable"].astype(bool)]
    columns = ["topic", "track", "native_item_models", "attempts", "passed", "pass_share", "evidence", "justification"]

    def table(df: pd.DataFrame) -> str:
        return (
            df[columns]
            .assign(pass_share=df["pass_share"].map(lambda v: "" if pd.isna(v) else f"{v:.0%}"))
            .to_html(index=False)
        )

    return [
        "<h2>Applicability: physics and evidence</h2>",
        f"<p>{len(applicable)} of {len(evidence)} (topic, track) pairs are applicable by physics (every pair's "
        "justification names the substrates it rests on). Beside the decision, the evidence of this run: questions "
        "generated, the share that passed validation and the leading failure reasons. Evidence never changes the "
        "decision; it flags where the generator cannot follow the physics.</p>",
        f"<h3>Applicable by physics, not served by the generator ({len(flagged)})</h3>",
        table(flagged.sort_values(["topic", "track"])) if len(flagged) else "<p>none</p>",
        "<h3>Evidence per applicable pair, lowest pass share first</h3>",
        table(applicable.sort_values(["pass_share", "topic", "track"], na_position="first")),
    ]


def gaps_section(gaps: pd.DataFrame) -> list[str]:
    """HTML: the open gaps (cells below their measured capacity) in the order they are filled."""
    counts = (
        gaps.groupby("priority").size().rename("gaps").rename_axis("priority").reset_index()
        if len(gaps)
        else pd.DataFrame(columns=["priority", "gaps"])
    )
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
        return (
            head + "<p>No review agreement yet: export a review sheet (<code>staffml review export</code>), import the "
            "filled ones (<code>staffml review import</code>) and materialize <code>review_agreement</code>.</p>"
        )
    table = review_kappa_table(agreement)
    if table.empty:
        return head + "<p>No pair of raters shares enough items yet.</p>"
    return (
        head
        + "<p>Mean Cohen's kappa per rubric criterion; 0.6 or more is substantial agreement. Intervals, rounds and "
        "the items raters split on: <code>review_agreement.md</code> beside this page.</p>"
        + table.to_html(na_rep="-", float_format=lambda v: f"{v:.2f}")
    )


def write_report(
    cov: Coverage,
    pictures: dict[str, bytes],
    directory: Path,
    evidence: pd.DataFrame | None = None,
    gaps: pd.DataFrame | None = None,
    reviews_html: str | None = None,
    overview_html: str | None = None,
) -> Path:
    """Write coverage.html, the PNGs (beside it, not in it), the per-cell table and, when given, the
    overview (balance and heatmaps, see :func:`overview_section`), the applicability evidence, the
    ranked open gaps and the reviews' agreement; atomically per file. The page is self-contained:
    no script, no picture, no external resource."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, png in pictures.items():
        write_atomic(directory / f"{name}.png", png)
    write_parquet_atomic(cov.cells, directory / "coverage_cells.parquet")
    if gaps is not None:
        write_parquet_atomic(gaps, directory / "coverage_gaps.parquet")
    stats = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.3f}</td></tr>"
        if isinstance(v, float)
        else f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
        for k, v in cov.stats.items()
    )
    under = cov.cells[~cov.cells["at_target"]].head(200)
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>StaffML corpus coverage</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}",
        HEATMAP_CSS,
        "</style></head><body>",
        "<h1>Corpus coverage</h1>",
    ]
    if overview_html:
        body.append(overview_html)
    body += ["<h2>All figures</h2><table class='stats'>", stats, "</table>"]
    if "capacity_total" in cov.stats:
        body.append(f"<h2>Capacity</h2><p>{html.escape(capacity_sentence(cov.stats))}</p>")
        reasons = (
            cov.cells["stop_reason"]
            .fillna("not measured")
            .value_counts()
            .rename("cells")
            .to_frame()
            .rename_axis("stop reason")
        )
        body.append(reasons.to_html())
    if gaps is not None:
        body += gaps_section(gaps)
    body.append("<h2>Counts by track, zone and level</h2>")
    for label, series in (("track", cov.by_track), ("zone", cov.by_zone), ("level", cov.by_level)):
        body.append(series.rename("questions").to_frame().rename_axis(label).to_html())
    if "native_item_models" in cov.partitions:
        body.append("<h2>Partitions: questions and the native item models that serve them</h2>")
        body.append(
            "<p>A partition whose topic has no item model computing its own mechanism stays empty: "
            "its questions wait for that item model rather than borrowing another topic's computation.</p>"
        )
        body.append(
            cov.partitions.sort_values(["native_item_models", "questions", "topic", "track"]).to_html(index=False)
        )
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
        SELECT count(*) AS topics, sum(n) AS questions, stddev_pop(n) / avg(n) AS cv_topics,
               max(n) / sum(n) AS max_topic_share
        FROM (SELECT a.topic, count(q.id) AS n
              FROM (SELECT DISTINCT topic FROM applicability_matrix) a LEFT JOIN corpus q USING (topic)
              GROUP BY ALL)""",
    "empty_partitions": """
        SELECT a.topic, a.track FROM applicability_matrix a
        WHERE a.applicable AND NOT EXISTS (SELECT 1 FROM corpus q WHERE q.topic = a.topic AND q.track = a.track)""",
    "track_zone_level": """
        SELECT track, zone, level, count(*) AS questions FROM corpus GROUP BY ALL ORDER BY ALL""",
}


def coverage_queries(con) -> dict[str, pd.DataFrame]:
    """Run every COVERAGE_SQL query on a DuckDB connection over the warehouse views."""
    return {name: con.execute(sql).df() for name, sql in COVERAGE_SQL.items()}


# --------------------------------------------------------------------------- the page's heatmaps
# HTML tables coloured in CSS: the page needs no script, no picture and no network to be read.

# fill of a partition or cell against its measured capacity (its interim target where unmeasured):
# (lower bound of the band, label, background, text colour), a 5-class yellow-green scale
FILL_BANDS = [
    (0.0, "under 25%", "#ffffcc", "#222"),
    (0.25, "25-50%", "#c2e699", "#222"),
    (0.5, "50-75%", "#78c679", "#111"),
    (0.75, "75-99%", "#31a354", "#fff"),
    (1.0, "at capacity", "#006837", "#fff"),
]
INAPPLICABLE_STYLE = "background:repeating-linear-gradient(45deg,#d4d4d4 0 4px,#e6e6e6 4px 8px);color:#666"
EMPTY_STYLE = "background:#fff;color:#c0392b;font-weight:bold;box-shadow:inset 0 0 0 2px #c0392b"

HEATMAP_CSS = """
.heat{border-collapse:separate;border-spacing:2px;font-size:13px}
.heat th,.heat td{border:none;padding:3px 8px}
.heat thead th{position:sticky;top:0;background:#fff;z-index:1;border-bottom:2px solid #333;text-align:center}
.heat td.cell{text-align:center;min-width:5.5em;font-variant-numeric:tabular-nums}
.heat th.topic{text-align:left;font-weight:normal;white-space:nowrap}
.heat tr.area th{text-align:left;background:#f0f0f0;font-size:14px;padding-top:8px;border-top:1px solid #999}
.heat td.total{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.heat td.flag{color:#c0392b;font-weight:bold}
.heat tfoot th,.heat tfoot td{border-top:2px solid #333;font-weight:bold;text-align:center}
.legend{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:8px 0;font-size:13px}
.legend span.swatch{display:inline-block;width:2.2em;height:1.3em;vertical-align:middle;margin-right:4px;
  border-radius:2px}
table.balance td.pass{color:#1e7d32;font-weight:bold}
table.balance td.fail{color:#c0392b;font-weight:bold}
table.balance th{text-align:left}
"""


def fill_band(share: float) -> tuple[str, str, str]:
    """(label, background, text colour) of the band a fill share falls in."""
    label, background, text = FILL_BANDS[0][1:]
    for low, *style in FILL_BANDS:
        if share >= low:
            label, background, text = style
    return label, background, text


def partition_fill(cov: Coverage, applicability: pd.DataFrame) -> pd.DataFrame:
    """One row per (topic, track) of the applicability matrix: whether it is applicable, its validated
    questions, its capacity (the sum of its cells' measured capacities, interim targets where
    unmeasured), the fill share and its state: ``inapplicable``, ``empty`` (applicable, no validated
    question) or ``filled``."""
    keys = ["topic", "track"]
    capacity = (
        cov.cells.groupby(keys)["target"].sum().rename("capacity")
        if len(cov.cells)
        else pd.Series(dtype=int, name="capacity")
    )
    questions = (
        cov.cells.groupby(keys)["filled"].sum().rename("questions")
        if len(cov.cells)
        else pd.Series(dtype=int, name="questions")
    )
    columns = keys + ["applicable"] + (["justification"] if "justification" in applicability else [])
    table = (
        applicability[columns]
        .merge(capacity.reset_index(), on=keys, how="left")
        .merge(questions.reset_index(), on=keys, how="left")
    )
    table["applicable"] = table["applicable"].astype(bool)
    table[["capacity", "questions"]] = table[["capacity", "questions"]].fillna(0).astype(int)
    table["fill"] = [q / c if c else (1.0 if q else 0.0) for q, c in zip(table["questions"], table["capacity"])]
    table["state"] = [
        "inapplicable" if not a else ("empty" if q == 0 else "filled")
        for a, q in zip(table["applicable"], table["questions"])
    ]
    return table


def legend_html() -> str:
    """The key of both heatmaps: the fill bands, an empty applicable partition, an inapplicable one."""
    items = [
        f"<span><span class='swatch' style='background:{bg}'></span>{html.escape(label)}</span>"
        for _, label, bg, _ in FILL_BANDS
    ]
    items.append(f"<span><span class='swatch' style='{EMPTY_STYLE}'></span>applicable, empty (0 validated)</span>")
    items.append(
        f"<span><span class='swatch' style='{INAPPLICABLE_STYLE}'></span>not applicable (physics; or a zone not asked "
        "at that level)</span>"
    )
    return (
        "<div class='legend' id='legend'><b>Fill against measured capacity:</b> "
        + "".join(items)
        + "<span>each cell reads <i>validated / capacity</i></span></div>"
    )


def _cell_td(state: str, questions: int, capacity: int, fill: float, title: str) -> str:
    if state == "inapplicable":
        return f"<td class='cell inapplicable' style='{INAPPLICABLE_STYLE}' title='{html.escape(title)}'>n/a</td>"
    if state == "empty":
        return f"<td class='cell empty' style='{EMPTY_STYLE}' title='{html.escape(title)}'>0 / {capacity}</td>"
    label, background, text = fill_band(fill)
    return (
        f"<td class='cell filled' data-fill='{fill:.3f}' style='background:{background};color:{text}' "
        f"title='{html.escape(title)} ({label})'>{questions} / {capacity}</td>"
    )


def topic_track_heatmap_html(
    fill: pd.DataFrame,
    topics: list[tuple[str, str, str]],
    tracks: list[tuple[str, str]],
    areas: list[str],
    max_topic_share: float,
) -> str:
    """Validated questions per (topic, track) against capacity, topics grouped by competency area
    (``topics``: id, display name, area; ``tracks``: id, display name), tracks across the top, a
    total per topic (flagged above ``max_topic_share`` of the corpus or under half the mean) and
    per area and track."""
    by_key = fill.set_index(["topic", "track"])
    per_topic = fill.groupby("topic")["questions"].sum()
    total = int(fill["questions"].sum())
    mean = float(per_topic.reindex([t[0] for t in topics], fill_value=0).mean()) if topics else 0.0
    head = "".join(f"<th scope='col' class='track'>{html.escape(name)}</th>" for _, name in tracks)
    rows = [
        f"<table class='heat' id='topic-track'><thead><tr><th>competency area / topic</th>{head}<th>topic total "
        "(share)</th></tr></thead>"
    ]
    for area in areas:
        members = [t for t in topics if t[2] == area]
        if not members:
            continue
        area_total = int(sum(per_topic.get(t[0], 0) for t in members))
        share = area_total / total if total else 0.0
        rows.append(
            f"<tbody class='area' data-area='{html.escape(area)}'><tr class='area'><th "
            f"colspan='{len(tracks) + 2}'>{html.escape(area)} <small>({len(members)} topics, {area_total:,} questions, "
            f"{share:.1%})</small></th></tr>"
        )
        for topic_id, name, _ in members:
            cells = []
            for track_id, track_name in tracks:
                row = by_key.loc[(topic_id, track_id)] if (topic_id, track_id) in by_key.index else None
                if row is None:
                    cells.append(
                        _cell_td("inapplicable", 0, 0, 0.0, f"{name} on {track_name}: not in the applicability matrix")
                    )
                    continue
                title = f"{name} on {track_name}: " + (
                    str(row.get("justification", "not applicable"))
                    if row["state"] == "inapplicable"
                    else f"{row['questions']} validated of a capacity of {row['capacity']}"
                )
                cells.append(
                    _cell_td(row["state"], int(row["questions"]), int(row["capacity"]), float(row["fill"]), title)
                )
            n = int(per_topic.get(topic_id, 0))
            topic_share = n / total if total else 0.0
            flag = topic_share > max_topic_share or n < mean / 2
            why = (f" above {max_topic_share:.0%}" if topic_share > max_topic_share else "") + (
                " under half the mean" if n < mean / 2 else ""
            )
            rows.append(
                "<tr><th scope='row' class='topic' "
                f"title='{html.escape(topic_id)}'>{html.escape(name)}</th>{''.join(cells)}<td "
                f"class='total{' flag' if flag else ''}' "
                f"title='{html.escape(why.strip()) or 'within the balance thresholds'}'>{n} "
                f"({topic_share:.1%})</td></tr>"
            )
        rows.append("</tbody>")
    foot = []
    for track_id, _ in tracks:
        on_track = fill[fill["track"] == track_id]
        foot.append(f"<td>{int(on_track['questions'].sum()):,} / {int(on_track['capacity'].sum()):,}</td>")
    rows.append(
        f"<tfoot><tr><th>track total</th>{''.join(foot)}<td>{total:,} / "
        f"{int(fill['capacity'].sum()):,}</td></tr></tfoot></table>"
    )
    return "\n".join(rows)


def zone_level_heatmap_html(cells: pd.DataFrame, zones: list[str], levels: list[str] = LEVEL_ORDER) -> str:
    """Validated questions per zone x level against the summed capacity of its cells; a zone x
    level pair without cells (the zone is not asked at that level) is greyed."""
    agg = (
        cells.groupby(["zone", "level"]).agg(filled=("filled", "sum"), capacity=("target", "sum"))
        if len(cells)
        else pd.DataFrame(columns=["filled", "capacity"])
    )
    head = "".join(f"<th scope='col'>{html.escape(level)}</th>" for level in levels)
    rows = [
        f"<table class='heat' id='zone-level'><thead><tr><th>zone</th>{head}<th>zone total</th></tr></thead><tbody>"
    ]
    for zone in zones:
        tds = []
        for level in levels:
            if (zone, level) not in agg.index:
                tds.append(_cell_td("inapplicable", 0, 0, 0.0, f"{zone} is not asked at {level}"))
                continue
            filled, capacity = int(agg.loc[(zone, level), "filled"]), int(agg.loc[(zone, level), "capacity"])
            state = "empty" if filled == 0 else "filled"
            share = filled / capacity if capacity else 1.0
            tds.append(
                _cell_td(
                    state, filled, capacity, share, f"{zone} at {level}: {filled} validated of a capacity of {capacity}"
                )
            )
        zone_total = int(agg.loc[zone, "filled"].sum()) if zone in agg.index.get_level_values(0) else 0
        rows.append(
            f"<tr><th scope='row' class='topic'>{html.escape(zone)}</th>{''.join(tds)}<td "
            f"class='total'>{zone_total:,}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def balance_html(stats: dict, balance_max_cv: float, max_topic_share: float) -> str:
    """sigma/mu across topics, tracks, zones and levels, and the largest topic's share, beside the
    thresholds the blocking corpus checks apply (specs/quality.yaml)."""

    def verdict(ok: bool) -> str:
        return "<td class='pass'>pass</td>" if ok else "<td class='fail'>fail</td>"

    rows = [
        (
            "σ/μ of questions per topic",
            f"{stats['cv_topics']:.3f}",
            f"&lt; {balance_max_cv:g} (balance_max_cv)",
            verdict(stats["cv_topics"] < balance_max_cv),
        ),
        (
            "largest topic's share of the corpus",
            f"{stats['max_topic_share']:.1%}",
            f"≤ {max_topic_share:.0%} (max_topic_share)",
            verdict(stats["max_topic_share"] <= max_topic_share),
        ),
        ("σ/μ of questions per track", f"{stats['cv_tracks']:.3f}", "reported, no threshold", "<td></td>"),
        ("σ/μ of questions per zone", f"{stats['cv_zones']:.3f}", "reported, no threshold", "<td></td>"),
        ("σ/μ of questions per level", f"{stats['cv_levels']:.3f}", "reported, no threshold", "<td></td>"),
        (
            "applicable partitions with no validated question",
            f"{stats['empty_partitions']}",
            "0 (corpus_partitions)",
            verdict(stats["empty_partitions"] == 0),
        ),
    ]
    body = "".join(
        f"<tr><th>{name}</th><td class='figure'>{value}</td><td>{threshold}</td>{v}</tr>"
        for name, value, threshold, v in rows
    )
    return (
        "<table class='balance' id='balance'><thead><tr><th>balance</th><th>value</th><th>threshold "
        f"(specs/quality.yaml)</th><th></th></tr></thead><tbody>{body}</tbody></table>"
    )


def overview_section(
    cov: Coverage,
    applicability: pd.DataFrame,
    topics: list[tuple[str, str, str]],
    tracks: list[tuple[str, str]],
    areas: list[str],
    zones: list[str],
    balance_max_cv: float,
    max_topic_share: float,
) -> str:
    """The top of the coverage page: the balance figures against their thresholds, the legend, the
    (topic, track) heatmap grouped by competency area and the zone x level heatmap."""
    fill = partition_fill(cov, applicability)
    counts = fill["state"].value_counts()
    return "\n".join(
        [
            "<h2>Balance against the blocking thresholds</h2>",
            balance_html(cov.stats, balance_max_cv, max_topic_share),
            "<h2>Validated questions per topic and track</h2>",
            f"<p>{int(counts.get('filled', 0))} partitions hold questions, {int(counts.get('empty', 0))} applicable "
            f"partitions hold none, {int(counts.get('inapplicable', 0))} are not applicable by physics. Topics are "
            f"grouped by competency area; a topic total in red is above {max_topic_share:.0%} of the corpus or under "
            "half the mean topic. Hover a cell for its justification or counts.</p>",
            legend_html(),
            topic_track_heatmap_html(fill, topics, tracks, areas, max_topic_share),
            "<h2>Validated questions per zone and level</h2>",
            "<p>Against the summed capacity of the zone's cells at that level; greyed where the zone is not asked at "
            "the level.</p>",
            zone_level_heatmap_html(cov.cells, zones),
        ]
    )
