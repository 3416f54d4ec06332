"""The offline item-model generator and the partitioned `questions` asset."""

import dagster as dg
import pandas as pd
import pytest

from staffml_dagster.core.calc import recompute
from staffml_dagster.core.item_model import item_models, models_for_topic
from staffml_dagster.generation.offline import ItemModelGenerator
from staffml_dagster.generation.partition import generate_partition
from staffml_dagster.partitions import applicable_pairs
from staffml_dagster.quality.criteria import repeated_computations
from staffml_dagster.stages.applicability import applicability_rows
from staffml_dagster.stages.capacity import cell_rows


@pytest.fixture(scope="module")
def cells(specs):
    m = applicability_rows(specs)
    return cell_rows(specs, applicable_pairs(m))


@pytest.fixture(scope="module")
def corpus(specs, cells):
    """Every applicable partition generated offline, as one table."""
    backend = ItemModelGenerator()
    frames = [generate_partition(specs, backend, part) for _, part in cells.groupby(["topic", "track"], sort=True)]
    return pd.concat(frames, ignore_index=True)


def _partition(specs, cells, topic, track):
    return generate_partition(specs, ItemModelGenerator(), cells[(cells.topic == topic) & (cells.track == track)])


def test_generation_is_deterministic_with_stable_ids(specs, cells):
    a = _partition(specs, cells, "kv-cache-management", "cloud")
    b = _partition(specs, cells, "kv-cache-management", "cloud")
    assert len(a) >= 5
    assert list(a["id"]) == list(b["id"])
    assert list(a["scenario"]) == list(b["scenario"])
    assert a["id"].is_unique


def test_rows_are_well_formed(specs, cells):
    from staffml_dagster.core.item_model import models_for_topic

    df = _partition(specs, cells, "kv-cache-management", "cloud")
    cloud = {p.id for p in specs.platforms_for("cloud")}
    native = {m.id for m in models_for_topic("kv-cache-management", "cloud")}
    assert {"kv-cache-sessions", "kv-swap-or-recompute"} <= native and set(
        df["item_model"]
    ) == native  # every native model serves the partition
    for r in df.itertuples():
        assert set(r.platforms) <= cloud, r.platforms
        assert r.question.count("?") == 1 and r.question.endswith("?"), r.question
        assert recompute(list(r.calc)) == [], r.id
        assert list(r.calc)[-1]["name"] == r.asked
        assert r.answer_value != r.mistake_value
        assert "**The Pitfall:**" in r.common_mistake and "**Calculations:**" in r.napkin_math
        assert r.backend == "item-models" and r.generator_version and r.prompt_hash
        assert r.item_model in native and r.signature.startswith(f"{r.item_model}|{r.framing}|")


def test_a_cell_holds_one_question_per_reasoning(specs, cells):
    """The same design with other numbers is the same question unless its claims come out otherwise."""
    df = _partition(specs, cells, "kv-cache-management", "edge")
    assert not df.duplicated(["zone", "level", "signature"]).any()
    design = df[df.framing == "context-for-concurrency"]
    outcomes = {r.signature.rsplit("|", 1)[1] for r in design.itertuples()}
    assert len(design) == len(outcomes) >= 2, design[["signature", "scale_point"]]


def test_partitions_without_a_native_item_model_stay_empty(specs, cells):
    """A (topic, track) is served only by item models that compute the topic's own mechanism on
    that track, never by a borrowed one: without such a model the partition holds nothing."""
    pairs = sorted({(t, k) for t, k in zip(cells.topic, cells.track) if not models_for_topic(t, k)})
    if not pairs:
        pytest.skip("every applicable partition has a native item model")
    topic, track = pairs[0]
    assert any(models_for_topic(topic, other) for other in ("cloud", "edge", "mobile", "tinyml"))  # served elsewhere
    assert _partition(specs, cells, topic, track).empty


def _questions_meta(result):
    """The metadata of the questions materialization (the job also measures cell_capacity)."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "questions"]
    assert len(events) == 1
    return events[0].step_materialization_data.materialization.metadata


def test_questions_asset_partition_and_inapplicable_partition(pipeline):
    instance = dg.DagsterInstance.ephemeral()
    assert pipeline.defs.resolve_job_def("design_stages").execute_in_process(instance=instance).success
    job = pipeline.defs.resolve_job_def("questions_job")
    ok = job.execute_in_process(partition_key="kv-cache-management|cloud", instance=instance)
    assert ok.success
    meta = _questions_meta(ok)
    assert meta["dagster/row_count"].value >= 5
    assert "L5" in meta["zone_x_level"].value and meta["samples"].value.count("**Question.**") == 5
    empty = job.execute_in_process(partition_key="kv-cache-management|tinyml", instance=instance)
    assert empty.success
    meta = _questions_meta(empty)
    assert meta["dagster/row_count"].value == 0
    assert "gigabytes of DRAM" in meta["inapplicable"].value
    path = pipeline.warehouse / "questions" / "topic=kv-cache-management" / "track=tinyml" / "part.parquet"
    assert path.exists() and len(pd.read_parquet(path)) == 0


def _materialization_meta(result, asset: str):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset]
    assert len(events) == 1
    return events[0].step_materialization_data.materialization.metadata


def test_a_second_run_keeps_what_the_warehouse_resource_holds(pipeline):
    """The questions and their embeddings of a partition's previous run are read from the
    warehouse the run writes to (the resource's folder, not the environment's): a second run
    keeps every question and embeds none again."""
    instance = dg.DagsterInstance.ephemeral()
    assert pipeline.defs.resolve_job_def("design_stages").execute_in_process(instance=instance).success
    job = pipeline.defs.resolve_job_def("questions_job")
    first = job.execute_in_process(partition_key="kv-cache-management|cloud", instance=instance)
    assert first.success and _materialization_meta(first, "questions")["kept_from_previous"].value == 0
    second = job.execute_in_process(partition_key="kv-cache-management|cloud", instance=instance)
    assert second.success
    rows = _materialization_meta(second, "questions")["dagster/row_count"].value
    assert rows >= 5
    assert _materialization_meta(second, "questions")["kept_from_previous"].value == rows
    assert _materialization_meta(second, "question_embeddings")["reused_vectors"].value == rows


def test_the_environment_chooses_the_resources_when_a_run_starts(monkeypatch):
    """STAFFML_GENERATOR and STAFFML_EMBEDDER feed the resources as dg.EnvVar (read in the run's
    process); unset, the offline generator and all-MiniLM-L6-v2."""
    from staffml_dagster.definitions import resources

    monkeypatch.setenv("STAFFML_GENERATOR", "anthropic")
    monkeypatch.setenv("STAFFML_EMBEDDER", "tfidf")
    res = resources()
    assert isinstance(res["generator"].backend, dg.EnvVar) and isinstance(res["embedder"].kind, dg.EnvVar)
    with dg.build_resources({"generator": res["generator"], "embedder": res["embedder"]}) as built:
        assert built.generator.backend == "anthropic" and built.embedder.get().name == "tfidf"
    monkeypatch.delenv("STAFFML_GENERATOR")
    monkeypatch.delenv("STAFFML_EMBEDDER")
    res = resources()
    assert (res["generator"].backend, res["embedder"].kind) == ("item-models", "all-MiniLM-L6-v2")
    assert resources(generator="anthropic", embedder="tfidf")["generator"].backend == "anthropic"


def test_an_unknown_generator_backend_fails_with_the_choices(tmp_path):
    from staffml_dagster.resources import GeneratorResource
    from staffml_dagster.storage import DuckDBWarehouse

    with pytest.raises(
        dg.Failure,
        match="unknown generator backend 'claude' in resource `generator`.*choose one of item-models, anthropic",
    ):
        GeneratorResource(backend="claude").create_backend(DuckDBWarehouse(base_dir=str(tmp_path)))
    assert GeneratorResource().create_backend(DuckDBWarehouse(base_dir=str(tmp_path))).name == "item-models"


@pytest.mark.integration
class TestFullCorpus:
    def test_every_topic_with_a_native_item_model_has_questions(self, corpus, cells):
        counts = corpus.groupby(["topic", "track"]).size()
        expected = {(t, k) for t, k in set(zip(cells.topic, cells.track)) if models_for_topic(t, k)}
        empty = sorted(f"{t}|{k}" for t, k in expected if counts.get((t, k), 0) == 0)
        assert not empty, empty
        served = {(t, k) for t, k in counts.index}
        assert served <= expected, sorted(served - expected)

    def test_questions_come_only_from_their_topics_native_item_models(self, corpus):
        models = item_models()
        foreign = [
            r.id
            for r in corpus.itertuples()
            if r.topic not in models[r.item_model].spec.topics
            and not any(r.topic in (d.topics or []) for d in models[r.item_model].spec.questions)
        ]
        assert not foreign, foreign[:5]

    def test_no_computation_repeats_under_two_topics_of_a_track(self, corpus):
        repeats = repeated_computations(corpus)
        assert repeats.empty, repeats.head()

    def test_every_calc_recomputes(self, corpus):
        bad = [(r.id, p) for r in corpus.itertuples() for p in recompute(list(r.calc))]
        assert not bad, bad[:5]

    def test_one_question_per_reasoning_in_a_cell(self, corpus):
        dupes = corpus.duplicated(["topic", "track", "zone", "level", "signature"])
        assert not dupes.any(), corpus[dupes][["topic", "track", "zone", "level", "signature"]].head()
        assert corpus["id"].is_unique

    def test_platforms_belong_to_the_track_and_mistakes_differ(self, corpus, specs):
        by_track = {t.id: {p.id for p in specs.platforms_for(t.id)} for t in specs.tracks.tracks}
        off = [r.id for r in corpus.itertuples() if not set(r.platforms) <= by_track[r.track]]
        assert not off
        assert ((corpus.answer_value - corpus.mistake_value).abs() > 0.1 * corpus.answer_value.abs()).all()

    def test_answers_are_positive_and_titles_fit(self, corpus):
        """A max batch of -0.45 or a 130-character title is a defect the corpus suite rejects."""
        assert (corpus.answer_value > 0).all(), corpus[corpus.answer_value <= 0][
            ["id", "framing", "asked", "answer_value"]
        ].head()
        assert corpus.title.str.len().max() <= 120, corpus.loc[corpus.title.str.len().idxmax(), "title"]


def test_anthropic_backend_without_key_fails_before_any_call(pipeline, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    assert pipeline.defs.resolve_job_def("design_stages").execute_in_process(instance=instance).success
    result = pipeline.defs.resolve_job_def("questions_job").execute_in_process(
        partition_key="kv-cache-management|cloud",
        instance=instance,
        raise_on_error=False,
        run_config={
            "resources": {"generator": {"config": {"backend": "anthropic"}}}
        },  # what `staffml run --backend anthropic` passes
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "ANTHROPIC_API_KEY is not set" in failure.event_specific_data.error.message
    assert not (
        pipeline.warehouse / "questions" / "topic=kv-cache-management" / "track=cloud" / "part.parquet"
    ).exists()


def test_a_question_row_is_one_definition_whose_id_follows_its_content(specs):
    """Backends build rows through QuestionRow: a field left out is an error, not a missing
    column, and the id depends on what makes the question, not on when or how cheaply it was made."""
    from dataclasses import replace

    from staffml_dagster.generation.backend import QUESTION_COLUMNS, CellRequest, QuestionRow

    cell = CellRequest("kv-cache-management", "cloud", "quantify", "L3", target=1, seed=0)
    content = dict(
        title="t",
        scenario="s",
        question="q?",
        realistic_solution="r",
        common_mistake="m",
        napkin_math="n",
        calc=[],
        answer_value=1.0,
        answer_unit="GB",
        mistake_value=2.0,
        mistake_id="x",
        platforms=["h100-sxm"],
        workload=None,
        scale_point=None,
        item_model="im",
        framing="f",
        asked="a",
        signature="sig",
        claims=[],
        distractors=[],
        backend="item-models",
        model=None,
        generator_version="v",
        prompt_hash="p",
        cost_usd=0.0,
    )
    row = QuestionRow.in_cell(specs, cell, **content)
    assert list(row.as_dict()) == QUESTION_COLUMNS
    assert row.competency_area == specs.topic_by_id["kv-cache-management"].area and row.spec_version == specs.version
    assert QuestionRow.in_cell(specs, cell, **{**content, "cost_usd": 0.5, "prompt_hash": "other"}).id == row.id
    assert QuestionRow.in_cell(specs, cell, **{**content, "answer_value": 1.5}).id != row.id
    assert QuestionRow.in_cell(specs, replace(cell, level="L4"), **content).id != row.id
    with pytest.raises(TypeError):
        QuestionRow.in_cell(specs, cell, **{k: v for k, v in content.items() if k != "napkin_math"})
