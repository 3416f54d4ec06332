"""The DuckDB coverage queries agree with the pandas coverage of the corpus asset."""

from pathlib import Path

import pandas as pd
import pytest

from staffml_dagster.quality.coverage import coverage, coverage_queries
from staffml_dagster.stages.applicability import EVIDENCE_COLUMNS
from staffml_dagster.storage import connect_warehouse, write_parquet_atomic

CELLS = pd.DataFrame(
    [
        ("a", "cloud", "recall", "L1", 2, 3),
        ("a", "cloud", "design", "L4", 2, 2),
        ("b", "edge", "recall", "L2", 1, 5),
        ("c", "cloud", "recall", "L1", 2, 4),
        ("b", "edge", "design", "L3", 2, 2),
    ],  # same target and capacity as a|cloud|design|L4: each cell counts on its own
    columns=["topic", "track", "zone", "level", "target", "theoretical_capacity"],
)
MATRIX = pd.DataFrame(
    [
        ("a", "cloud", True),
        ("a", "edge", False),
        ("b", "cloud", False),
        ("b", "edge", True),
        ("c", "cloud", True),
        ("c", "edge", False),
    ],
    columns=["topic", "track", "applicable"],
)
# a|cloud|recall|L1 filled 2 of 2, a|cloud|design|L4 overfilled (3 > capacity 2), b|edge|recall 1 of 1,
# b|edge|design 1 of 2 (under target, not overfilled), c|cloud empty
CORPUS = pd.DataFrame(
    [
        (f"q{i}", t, k, z, lv)
        for i, (t, k, z, lv) in enumerate(
            [("a", "cloud", "recall", "L1")] * 2
            + [("a", "cloud", "design", "L4")] * 3
            + [("b", "edge", "recall", "L2")]
            + [("b", "edge", "design", "L3")]
        )
    ],
    columns=["id", "topic", "track", "zone", "level"],
)


@pytest.fixture
def con(tmp_path):
    for name, df in (("cells", CELLS), ("applicability_matrix", MATRIX), ("corpus", CORPUS)):
        write_parquet_atomic(df, tmp_path / name / "part.parquet")
    return connect_warehouse(tmp_path)


def test_sql_coverage_matches_pandas_coverage(con):
    sql = coverage_queries(con)
    cov = coverage(CORPUS, CELLS, MATRIX)
    fill = sql["cell_fill"].sort_values(["topic", "track", "zone", "level"]).reset_index(drop=True)
    expected = cov.cells.sort_values(["topic", "track", "zone", "level"]).reset_index(drop=True)
    assert list(fill["filled"]) == list(expected["filled"]) == [3, 2, 1, 1, 0]
    assert (
        sql["completeness"]["completeness"].iloc[0] == pytest.approx(cov.stats["completeness"]) == pytest.approx(3 / 5)
    )
    assert int(sql["completeness"]["overfilled_cells"].iloc[0]) == cov.stats["overfilled_cells"] == 1
    assert sql["topic_balance"]["cv_topics"].iloc[0] == pytest.approx(cov.stats["cv_topics"])
    assert (
        sql["topic_balance"]["max_topic_share"].iloc[0]
        == pytest.approx(cov.stats["max_topic_share"])
        == pytest.approx(5 / 7)
    )
    assert [tuple(r) for r in sql["empty_partitions"].itertuples(index=False)] == [("c", "cloud")]
    assert cov.stats["empty_partitions"] == 1
    assert int(sql["track_zone_level"]["questions"].sum()) == len(CORPUS)


def test_measured_capacity_is_the_target_and_the_report_says_how_much():
    from staffml_dagster.quality.coverage import capacity_sentence

    measured = pd.DataFrame(
        [("a", "cloud", "recall", "L1", 3, "exhausted"), ("b", "edge", "design", "L3", 1, "max_rounds")],
        columns=["topic", "track", "zone", "level", "capacity", "stop_reason"],
    )
    cov = coverage(CORPUS, CELLS, MATRIX, measured=measured)
    cell = cov.cells.set_index(["topic", "track", "zone", "level"])
    assert (
        cell.loc[("a", "cloud", "recall", "L1"), "target"] == 3
        and not cell.loc[("a", "cloud", "recall", "L1"), "at_target"]
    )
    assert (
        cell.loc[("b", "edge", "design", "L3"), "target"] == 1 and cell.loc[("b", "edge", "design", "L3"), "at_target"]
    )
    assert cell.loc[("c", "cloud", "recall", "L1"), "target"] == 2  # unmeasured: the interim target stays
    assert cov.stats["capacity_total"] == 4 and cov.stats["cells_measured"] == 2
    assert cov.stats["cells_saturated_share"] == pytest.approx(1 / 5)  # only the enumerated cell saturated
    sentence = capacity_sentence(cov.stats)
    assert "4 distinct questions over 2 cells" in sentence and "12,000-14,000" in sentence


GAP_CELLS = pd.DataFrame(
    [
        ("other", "cloud", "recall", "L1", 4, 0),  # critical? no; not a priority zone
        ("other", "cloud", "mastery", "L6+", 2, 1),
        ("other", "cloud", "optimization", "L4", 3, 0),
        ("crit", "cloud", "recall", "L2", 2, 0),
        ("crit", "cloud", "optimization", "L5", 2, 0),
        ("crit", "cloud", "design", "L4", 2, 2),  # at capacity: not a gap
        ("low", "edge", "mastery", "L6+", 2, 0),  # a less filled topic than `other`: first among mastery gaps
        ("crit", "cloud", "mastery", "L6+", 1, 0),
    ],
    columns=["topic", "track", "zone", "level", "target", "filled"],
)


def test_gaps_rank_priority_zones_then_underfilled_critical_topics():
    from staffml_dagster.quality.gaps import generation_order, rank_gaps

    gaps = rank_gaps(GAP_CELLS, {"crit"}, ["mastery", "optimization"])
    order = [f"{r.topic}|{r.zone}" for r in gaps.itertuples()]
    assert order == [
        "crit|mastery",
        "crit|optimization",  # priority zone of a critical topic
        "low|mastery",
        "other|mastery",
        "other|optimization",  # priority zones, least filled topic first
        "crit|recall",  # the critical topic's other gaps
        "other|recall",
    ]
    assert list(gaps["rank"]) == list(range(1, 8)) and "crit|design" not in order
    assert gaps.loc[0, "why"] == "mastery zone, critical topic 29% filled" and gaps.iloc[-1]["why"] == "open gap"
    assert list(gaps["missing"]) == [1, 2, 2, 1, 3, 2, 4]
    full = generation_order(GAP_CELLS, {"crit"}, ["mastery", "optimization"])
    assert [f"{r.topic}|{r.zone}" for r in full.itertuples()] == order + ["crit|design"]  # cells at target last


def test_report_shows_the_gaps_and_the_applicability_evidence(tmp_path):
    from staffml_dagster.quality.coverage import write_report
    from staffml_dagster.quality.gaps import rank_gaps

    gaps = rank_gaps(GAP_CELLS, {"crit"}, ["mastery", "optimization"])
    evidence = pd.DataFrame(
        [
            (
                "a",
                "cloud",
                True,
                "A applies on Cloud because ...",
                0,
                0,
                0,
                float("nan"),
                [],
                "no native item model computes this topic's mechanism on this track, so the generator produced nothing",
                True,
            ),
            (
                "b",
                "edge",
                True,
                "B applies on Edge because ...",
                2,
                4,
                4,
                1.0,
                [],
                "4 generated from 2 native item model(s), 4 passed (100%)",
                False,
            ),
        ],
        columns=EVIDENCE_COLUMNS,
    )
    page = write_report(coverage(CORPUS, CELLS, MATRIX), {}, tmp_path, evidence=evidence, gaps=gaps).read_text()
    assert "Open gaps, most important first (7)" in page and "mastery zone, critical topic 29% filled" in page
    assert "Applicable by physics, not served by the generator (1)" in page and "no native item model computes" in page
    assert len(pd.read_parquet(tmp_path / "coverage_gaps.parquet")) == 7


def test_corpus_job_ranks_the_gaps_and_records_the_evidence(pipeline):
    """The corpus group wired end to end on one partition: open_gaps and applicability_evidence are
    materialized from the validated questions and shown in the coverage report."""
    import dagster as dg

    from staffml_dagster.paths import reports_dir

    defs, warehouse = pipeline.defs, pipeline.warehouse

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("design_stages").execute_in_process(instance=instance, run_config=quiet).success
    assert (
        defs.resolve_job_def("questions_job")
        .execute_in_process(partition_key="kv-cache-management|cloud", instance=instance, run_config=quiet)
        .success
    )
    result = defs.resolve_job_def("corpus_job").execute_in_process(
        instance=instance, run_config=quiet, raise_on_error=False
    )
    mats = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert {"open_gaps", "applicability_evidence", "coverage_report"} <= set(mats)
    evidence = pd.read_parquet(warehouse / "applicability_evidence" / "part.parquet")
    kv = evidence[(evidence.topic == "kv-cache-management") & (evidence.track == "cloud")].iloc[0]
    assert kv.attempts > 0 and kv.pass_share > 0.5 and not kv.physics_without_evidence
    # only one partition was generated: every other applicable pair is flagged as not served
    assert mats["applicability_evidence"]["flagged_pairs"].value == int(evidence.applicable.sum()) - 1
    gaps = pd.read_parquet(warehouse / "open_gaps" / "part.parquet")
    assert list(gaps["rank"]) == list(range(1, len(gaps) + 1)) and gaps.iloc[0]["zone"] == "mastery"
    assert (
        "rank" in mats["open_gaps"]["ranked_gaps"].value
        and "priority zone, critical topic" in mats["open_gaps"]["gaps_by_priority"].value
    )
    page = (reports_dir() / "coverage.html").read_text()
    assert "Open gaps, most important first" in page and "Applicable by physics, not served by the generator" in page
    # the overview of the real specs: every competency area a group, one cell per (topic, track)
    from staffml_dagster.specs import cached_specs

    specs = cached_specs()
    heat = page.split("id='topic-track'")[1].split("</table>")[0]
    assert heat.count("<tbody class='area'") == len({t.area for t in specs.topics.topics})
    assert heat.count("class='cell ") == len(specs.topics.topics) * len(specs.tracks.tracks) == len(evidence)
    assert heat.count("class='cell inapplicable'") == int((~evidence.applicable).sum())
    assert heat.count("class='cell filled'") == 1  # kv-cache-management|cloud, the one partition generated
    # the corpus checks link to the offline results page, which exists and names their suites
    docs = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}
    results_page = docs["corpus_is_balanced"]["data_docs"].value
    assert results_page.endswith("gx/validation_results.html") and all(
        d["data_docs"].value == results_page for d in docs.values() if "data_docs" in d
    )
    assert "corpus_topics" in Path(results_page).read_text() and "corpus_partitions" in Path(results_page).read_text()
    from staffml_dagster.cli import summary
    from staffml_dagster.storage import connect_warehouse

    text = summary(connect_warehouse(warehouse))
    assert f"open gaps: {len(gaps)} cells below their measured capacity" in text
    assert f"not served by the generator: {int(evidence.applicable.sum()) - 1} pairs" in text


def test_review_section_of_the_coverage_page():
    from staffml_dagster.quality.coverage import review_kappa_table, review_section_html

    assert "staffml review export" in review_section_html(None)
    agreement = pd.DataFrame(
        [
            {"round": "all", "criterion": "staff_worthy", "raters": "gate vs human:ana", "items": 30, "kappa": 0.05},
            {"round": "all", "criterion": "staff_worthy", "raters": "gate vs human:ben", "items": 20, "kappa": 0.15},
            {
                "round": "all",
                "criterion": "staff_worthy",
                "raters": "human:ana vs human:ben",
                "items": 20,
                "kappa": 0.7,
            },
            {"round": "all", "criterion": "topic_fit", "raters": "judge vs human:ana", "items": 30, "kappa": 0.62},
            {
                "round": "1",
                "criterion": "topic_fit",
                "raters": "gate vs human:ana",
                "items": 30,
                "kappa": 0.9,
            },  # a round: not shown
            {
                "round": "all",
                "criterion": "topic_fit",
                "raters": "all (gate, human:ana, human:ben)",
                "items": 20,
                "kappa": 0.3,
            },
        ]
    )
    table = review_kappa_table(agreement)
    assert list(table.index) == ["topic_fit", "staff_worthy"]
    assert table.loc["staff_worthy", "gate vs reviewers"] == pytest.approx(0.1)
    assert table.loc["staff_worthy", "among reviewers"] == pytest.approx(0.7)
    assert table.loc["topic_fit", "judge vs reviewers"] == pytest.approx(0.62)
    assert pd.isna(table.loc["topic_fit", "gate vs reviewers"])
    page = review_section_html(agreement)
    assert "<th>staff_worthy</th>" in page and "<td>0.10</td>" in page and "<td>-</td>" in page


def test_per_topic_counts_and_sigma_over_mu_are_one_fact(con, tmp_path):
    """The balance check, the coverage report and `staffml run`'s summary count questions per
    topic the same way: every topic of the matrix, a topic without questions counted as 0."""
    from staffml_dagster.cli import summary
    from staffml_dagster.quality.coverage import cv, questions_per_topic
    from staffml_dagster.stages.corpus import _corpus_suite_frames

    per_topic = questions_per_topic(CORPUS, MATRIX)
    assert per_topic.to_dict() == {"a": 5, "b": 2, "c": 0}  # c has an applicable partition and no question
    expected = pd.Series([5, 2, 0]).std(ddof=0) / pd.Series([5, 2, 0]).mean()
    assert cv(per_topic) == pytest.approx(expected)
    assert coverage(CORPUS, CELLS, MATRIX).stats["cv_topics"] == pytest.approx(expected)
    frame, _ = _corpus_suite_frames(CORPUS, MATRIX)
    assert frame.to_dict("records") == [
        {"topic": "a", "questions": 5},
        {"topic": "b", "questions": 2},
        {"topic": "c", "questions": 0},
    ]
    assert list(questions_per_topic(CORPUS.iloc[0:0], MATRIX)) == [0, 0, 0]
    write_parquet_atomic(CORPUS, tmp_path / "questions" / "part.parquet")
    assert f"sigma/mu of per-topic counts: {expected:.3f}" in summary(connect_warehouse(tmp_path))


# three areas' worth of topics on two tracks: a|cloud filled, a|edge inapplicable, b|edge filled, c|cloud
# applicable and empty (as in CORPUS above), the per-topic counts 5, 2, 0 (sigma/mu 0.881)
TOPICS = [("a", "Alpha Topic", "compute"), ("b", "Beta Topic", "memory"), ("c", "Gamma Topic", "compute")]
TRACKS = [("cloud", "Cloud"), ("edge", "Edge")]


def test_partition_fill_tells_inapplicable_from_empty_and_measures_fill_against_capacity():
    from staffml_dagster.quality.coverage import partition_fill

    measured = pd.DataFrame(
        [("a", "cloud", "recall", "L1", 4, "exhausted")],
        columns=["topic", "track", "zone", "level", "capacity", "stop_reason"],
    )
    fill = partition_fill(coverage(CORPUS, CELLS, MATRIX, measured=measured), MATRIX).set_index(["topic", "track"])
    assert fill.loc[("a", "edge"), "state"] == fill.loc[("b", "cloud"), "state"] == "inapplicable"
    assert fill.loc[("c", "cloud"), "state"] == "empty" and fill.loc[("c", "cloud"), "capacity"] == 2
    # a|cloud: 5 validated against the measured 4 of recall|L1 plus the interim 2 of design|L4
    assert (fill.loc[("a", "cloud"), "questions"], fill.loc[("a", "cloud"), "capacity"]) == (5, 6)
    assert fill.loc[("a", "cloud"), "fill"] == pytest.approx(5 / 6) and fill.loc[("a", "cloud"), "state"] == "filled"
    assert fill.loc[("b", "edge"), "fill"] == pytest.approx(2 / 3)


def test_fill_bands_cover_every_share():
    from staffml_dagster.quality.coverage import FILL_BANDS, fill_band

    assert fill_band(0.1)[0] == "under 25%" and fill_band(0.5)[0] == "50-75%" and fill_band(0.99)[0] == "75-99%"
    assert fill_band(1.0)[0] == fill_band(1.4)[0] == "at capacity"
    assert len({fill_band(low)[1] for low, *_ in FILL_BANDS}) == len(FILL_BANDS)  # one colour per band


def test_coverage_page_groups_topics_by_area_and_shows_thresholds(tmp_path):
    import re

    from staffml_dagster.quality.coverage import overview_section, write_report

    cov = coverage(CORPUS, CELLS, MATRIX)
    overview = overview_section(
        cov, MATRIX, TOPICS, TRACKS, ["compute", "memory", "power"], ["recall", "design"], 0.5, 0.10
    )
    page = write_report(cov, {}, tmp_path, overview_html=overview).read_text()
    # areas in the specs' order, each with its own topics; an area without topics has no group
    areas = re.findall(r"<tbody class='area' data-area='([^']+)'>", page)
    assert areas == ["compute", "memory"]
    compute = page.split("data-area='compute'")[1].split("</tbody>")[0]
    assert "Alpha Topic" in compute and "Gamma Topic" in compute and "Beta Topic" not in compute
    # tracks head the table, before any topic row
    assert page.index(">Cloud</th>") < page.index("Alpha Topic") and page.index(">Edge</th>") < page.index(
        "Alpha Topic"
    )
    # the 3 inapplicable pairs and the applicable empty one (c|cloud, capacity 2) are drawn differently
    heat = page.split("id='topic-track'")[1].split("</table>")[0]
    assert (
        heat.count("class='cell inapplicable'") == 3 and heat.count("class='cell empty'") == 1 and ">0 / 2</td>" in heat
    )
    # coloured by fill against capacity: a|cloud 5 of 4 (over: the top band), b|edge 2 of 3
    assert (
        "data-fill='1.250' style='background:#006837" in heat and "data-fill='0.667' style='background:#78c679" in heat
    )
    assert (
        heat.split("<tfoot>")[1].count("<td>") == 3 and "<td>5 / 6</td><td>2 / 3</td><td>7 / 9</td>" in heat
    )  # per track, then all
    # the balance figures beside their thresholds: sigma/mu 0.881 fails < 0.5; Alpha holds 5 of 7 (71.4%)
    assert re.search(
        r"σ/μ of questions per topic</th><td class='figure'>0\.881</td>"
        r"<td>&lt; 0\.5 \(balance_max_cv\)</td><td class='fail'>",
        page,
    )
    assert "71.4%" in page and "≤ 10% (max_topic_share)" in page
    assert "id='legend'" in page and "not applicable (physics" in page and "applicable, empty" in page
    # self-contained: no script, no picture, nothing fetched
    assert "<script" not in page and "<img" not in page and "http" not in page
