"""The design stages as plain functions, and their in-process materialization with checks."""

import dagster as dg
import pandas as pd

from staffml_dagster.partitions import applicable_pairs
from staffml_dagster.stages.applicability import applicability_rows, unjustified_exclusions
from staffml_dagster.stages.capacity import cell_rows
from staffml_dagster.stages.skills import zone_pair_problems, zones_table
from staffml_dagster.stages.taxonomy import taxonomy_problems, topics_table


def test_applicability_is_physics(specs):
    m = applicability_rows(specs)
    assert len(m) == 86 * 4
    per_track = m.groupby("track")["applicable"].sum()
    assert per_track["cloud"] == per_track.max() and per_track["tinyml"] == per_track.min()
    assert per_track["tinyml"] < per_track["cloud"]
    row = m[(m.topic == "kv-cache-management") & (m.track == "tinyml")].iloc[0]
    assert not row.applicable and "gb-dram" in row.missing_substrates and "gigabytes of DRAM" in row.justification
    assert m[(m.topic == "rdma-transport") & (m.track == "cloud")].iloc[0].applicable
    assert not unjustified_exclusions(m)
    assert set(m.loc[m.applicable, "topic"]) == set(m.topic)


def test_unjustified_exclusion_is_caught(specs):
    m = applicability_rows(specs)
    i = m.index[~m.applicable][0]
    m.loc[i, "justification"] = "excluded."
    assert unjustified_exclusions(m) == [f"{m.loc[i, 'topic']}|{m.loc[i, 'track']}"]


def test_zone_check_catches_a_missing_pair(specs):
    z = zones_table(specs)
    skills = [s.id for s in specs.skills.skills]
    assert zone_pair_problems(z, skills) == []
    broken = z[z.zone != "fluency"]
    assert any("recall+quantify appears 0 times" in p for p in zone_pair_problems(broken, skills))


def test_taxonomy_check_catches_unknown_edge_and_cycle(specs):
    t = topics_table(specs)
    assert taxonomy_problems(t) == []
    t.at[0, "related"] = ["nowhere"]
    t.at[1, "prerequisites"] = [t.at[2, "topic"]]
    t.at[2, "prerequisites"] = [t.at[1, "topic"]]
    problems = taxonomy_problems(t)
    assert any("unknown topic nowhere" in p for p in problems)
    assert any("cycle" in p for p in problems)


def test_figure_check_catches_non_positive_and_unitless_figures(specs):
    from staffml_dagster.specs import Figure
    from staffml_dagster.stages.taxonomy import figure_problems, hardware_figures

    assert figure_problems(hardware_figures(specs)) == []
    bad = [
        ("h100-sxm", "memory", Figure.model_construct(value=-1.0, unit="GB", source="x")),
        ("h100-sxm", "power", Figure.model_construct(value=700.0, unit="horsepowerz", source="x")),
    ]
    problems = figure_problems(bad)
    assert problems[0] == "h100-sxm.memory is not positive" and "unknown unit 'horsepowerz'" in problems[1]


def test_cells_respect_affinity_and_capacity_formula(specs):
    m = applicability_rows(specs)
    cells = cell_rows(specs, applicable_pairs(m))
    affinity = {z.id: set(z.levels) for z in specs.zones}
    assert all(r.level in affinity[r.zone] for r in cells.itertuples())
    r = cells[(cells.topic == "kv-cache-management") & (cells.track == "cloud")].iloc[0]
    expected = (
        len(specs.platforms_for("cloud"))
        * len(specs.workloads_for("kv-cache-management", "cloud"))
        * len(specs.topic_by_id["kv-cache-management"].failure_modes)
        * len(specs.scale_points_for("kv-cache-management", "cloud"))
    )
    assert r.theoretical_capacity == expected > 0
    assert not set(zip(cells.topic, cells.track)) - {(t.topic, t.track) for t in m.itertuples() if t.applicable}
    assert (cells.theoretical_capacity > 0).all()


def test_definitions_load():
    from staffml_dagster.definitions import defs

    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {
        "skills",
        "zones",
        "levels",
        "tracks",
        "topics",
        "hardware_platforms",
        "applicability_matrix",
        "cells",
        "questions",
    } <= keys
    assert defs.resolve_job_def("design_stages") is not None


def test_design_stages_materialize_with_passing_checks(pipeline):
    result = pipeline.defs.resolve_job_def("design_stages").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [(c.check_name, c.metadata) for c in checks if not c.passed]
    assert (pipeline.warehouse / "applicability_matrix" / "part.parquet").exists()
    zones = pd.read_parquet(pipeline.warehouse / "zones" / "part.parquet")
    assert len(zones) == 12
    mats = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert mats["topics"]["dagster/row_count"].value == 86
    matrix = pd.read_parquet(pipeline.warehouse / "applicability_matrix" / "part.parquet")
    assert (
        mats["applicability_matrix"]["dagster/row_count"].value == len(matrix) == 344
    )  # the table's rows, not the excluded ones previewed
    assert mats["applicability_matrix"]["excluded_pairs"].value == int((~matrix["applicable"]).sum())
    assert "|" in mats["cells"]["preview"].value


def test_staffml_sql_prints_a_table(warehouse, capsys):
    from staffml_dagster.cli import main
    from staffml_dagster.definitions import defs

    assert defs.resolve_job_def("design_stages").execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    assert (
        main(
            [
                "sql",
                "SELECT track, count(*) AS applicable FROM applicability_matrix WHERE applicable "
                "GROUP BY track ORDER BY track",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cloud" in out and "tinyml" in out and "applicable" in out
    assert main(["sql", "SELECT * FROM no_such_view"]) == 2


def test_rows_by_partition_gives_each_key_its_own_rows():
    from staffml_dagster.stages.metadata import rows_by_partition, table_metadata

    df = pd.DataFrame(
        {
            "topic": ["kv-cache-management", "kv-cache-management", "roofline-analysis"],
            "track": ["cloud", "edge", "cloud"],
            "id": ["a", "b", "c"],
        }
    )
    split = rows_by_partition(df, ["kv-cache-management|edge", "roofline-analysis|cloud", "roofline-analysis|tinyml"])
    assert list(split["kv-cache-management|edge"]["id"]) == ["b"] and list(split["roofline-analysis|cloud"]["id"]) == [
        "c"
    ]
    assert split["roofline-analysis|tinyml"].empty and list(split["roofline-analysis|tinyml"].columns) == list(
        df.columns
    )
    meta = table_metadata(df, ["id"], preview_of=df[df["track"] == "edge"])
    assert meta["dagster/row_count"].value == 3 and "b" in meta["preview"].value and "| a" not in meta["preview"].value
