"""The offline item-model generator and the partitioned `questions` asset."""

import collections

import dagster as dg
import pandas as pd
import pytest

from staffml_dagster.generation.calc import recompute
from staffml_dagster.generation.framings import MAX_TITLE_CHARS
from staffml_dagster.generation.offline import ItemModelGenerator, models_for
from staffml_dagster.generation.partition import generate_partition
from staffml_dagster.stages.applicability import applicability_rows
from staffml_dagster.stages.capacity import cell_rows


@pytest.fixture(scope="module")
def cells(specs):
    m = applicability_rows(specs)
    return cell_rows(specs, {(r.topic, r.track) for r in m.itertuples() if r.applicable})


@pytest.fixture(scope="module")
def corpus(specs, cells):
    """Every applicable partition generated offline, as one table."""
    backend = ItemModelGenerator()
    frames = [generate_partition(specs, backend, part) for _, part in cells.groupby(["topic", "track"], sort=True)]
    return pd.concat(frames, ignore_index=True)


def _partition(specs, cells, topic, track):
    return generate_partition(specs, ItemModelGenerator(), cells[(cells.topic == topic) & (cells.track == track)])


def test_every_applicable_partition_has_item_models(specs, cells):
    pairs = set(zip(cells.topic, cells.track))
    missing = sorted(f"{t}|{k}" for t, k in pairs if not models_for(t, k))
    assert not missing, f"partitions without an item model: {missing}"
    single = sorted(f"{t}|{k}" for t, k in pairs if len(models_for(t, k)) == 1)
    assert len(single) <= 5, single


def test_generation_is_deterministic_with_stable_ids(specs, cells):
    a = _partition(specs, cells, "kv-cache-management", "cloud")
    b = _partition(specs, cells, "kv-cache-management", "cloud")
    assert len(a) >= 20
    assert list(a["id"]) == list(b["id"])
    assert list(a["scenario"]) == list(b["scenario"])
    assert a["id"].is_unique


def test_rows_are_well_formed(specs, cells):
    df = _partition(specs, cells, "duty-cycling", "tinyml")
    tinyml = {p.id for p in specs.platforms_for("tinyml")}
    for r in df.itertuples():
        assert set(r.platforms) <= tinyml, r.platforms
        assert r.question.count("?") == 1 and r.question.endswith("?"), r.question
        assert recompute(list(r.calc)) == [], r.id
        assert r.answer_value != r.mistake_value
        assert "**The Pitfall:**" in r.common_mistake and "**Calculations:**" in r.napkin_math
        assert r.backend == "item-models" and r.generator_version and r.prompt_hash


def test_questions_asset_partition_and_inapplicable_partition(warehouse):
    from staffml_dagster.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("design_stages").execute_in_process(instance=instance).success
    job = defs.resolve_job_def("questions_job")
    ok = job.execute_in_process(partition_key="duty-cycling|tinyml", instance=instance)
    assert ok.success
    meta = ok.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
    assert meta["dagster/row_count"].value >= 20
    assert "L6+" in meta["zone_x_level"].value and meta["samples"].value.count("**Question.**") == 5
    empty = job.execute_in_process(partition_key="kv-cache-management|tinyml", instance=instance)
    assert empty.success
    meta = empty.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
    assert meta["dagster/row_count"].value == 0
    assert "gigabytes of DRAM" in meta["inapplicable"].value
    path = warehouse / "questions" / "topic=kv-cache-management" / "track=tinyml" / "part.parquet"
    assert path.exists() and len(pd.read_parquet(path)) == 0


@pytest.mark.integration
class TestFullCorpus:
    def test_every_partition_has_at_least_20(self, corpus, cells):
        counts = corpus.groupby(["topic", "track"]).size()
        expected = set(zip(cells.topic, cells.track))
        small = {k: int(counts.get(k, 0)) for k in expected if counts.get(k, 0) < 20}
        assert not small, small

    def test_zones_and_levels_in_every_track(self, corpus, specs):
        for track, part in corpus.groupby("track"):
            assert set(part.zone) == {z.id for z in specs.zones}, track
            assert set(part.level) == {"L1", "L2", "L3", "L4", "L5", "L6+"}, track

    def test_size_and_balance(self, corpus):
        assert len(corpus) >= 6000
        per_topic = corpus.groupby("topic").size()
        assert len(per_topic) == 86
        assert per_topic.std(ddof=0) / per_topic.mean() < 0.5

    def test_every_calc_recomputes(self, corpus):
        bad = [(r.id, p) for r in corpus.itertuples() for p in recompute(list(r.calc))]
        assert not bad, bad[:5]

    def test_no_two_questions_share_path_and_parameters_in_a_cell(self, corpus):
        dupes = corpus.duplicated(["topic", "track", "zone", "level", "signature"])
        assert not dupes.any(), corpus[dupes][["topic", "track", "zone", "level", "signature"]].head()
        assert corpus["id"].is_unique

    def test_platforms_belong_to_the_track_and_mistakes_differ(self, corpus, specs):
        by_track = {t.id: {p.id for p in specs.platforms_for(t.id)} for t in specs.tracks.tracks}
        off = [r.id for r in corpus.itertuples() if not set(r.platforms) <= by_track[r.track]]
        assert not off
        assert (corpus.answer_value != corpus.mistake_value).all()

    def test_answers_are_positive_and_titles_fit(self, corpus):
        """A max batch of -0.45 or a 130-character title is a defect the corpus suite rejects."""
        assert (corpus.answer_value > 0).all(), corpus[corpus.answer_value <= 0][["id", "framing", "asked", "answer_value"]].head()
        assert corpus.title.str.len().max() <= MAX_TITLE_CHARS, corpus.loc[corpus.title.str.len().idxmax(), "title"]

    def test_many_item_models_are_in_use(self, corpus):
        per_model = collections.Counter(corpus.item_model)
        assert len(per_model) >= 15, per_model


def test_anthropic_backend_without_key_fails_before_any_call(warehouse, monkeypatch):
    from staffml_dagster.definitions import defs

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("design_stages").execute_in_process(instance=instance).success
    result = defs.resolve_job_def("questions_job").execute_in_process(
        partition_key="duty-cycling|tinyml", instance=instance, raise_on_error=False,
        run_config={"ops": {"questions": {"config": {"backend": "anthropic"}}}},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "ANTHROPIC_API_KEY is not set" in failure.event_specific_data.error.message
    assert not (warehouse / "questions" / "topic=duty-cycling" / "track=tinyml" / "part.parquet").exists()
