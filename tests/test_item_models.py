"""Every item model: every design on every track renders whole questions whose calc
recomputes, whose misconception gives a visibly different number, whose figures are the
scenario's own, and whose zone and level are honest. Run one model with
``pytest tests/test_item_models.py -k <model-id>``."""

import re

import pytest

from staffml_dagster.core.calc import recompute
from staffml_dagster.core.item_model import ItemModel, ItemModelError, assigned_topic, draft, item_models, plan
from staffml_dagster.generation.backend import CellRequest
from staffml_dagster.generation.offline import ItemModelGenerator

try:  # the gate's text checks; the rendering checks below run without them
    from staffml_dagster.quality.criteria import coherence, structure
except ImportError:  # pragma: no cover
    coherence = structure = None

MODELS = sorted(item_models())


def _cases():
    for mid in MODELS:
        m = item_models()[mid]
        for d in m.spec.questions:
            for track in d.tracks or m.spec.tracks:
                yield pytest.param(mid, d.id, track, id=f"{mid}-{d.id}-{track}")


def _drafts(specs, model: ItemModel, design, track, per_reasoning: int = 2):
    """Up to ``per_reasoning`` rendered questions for every reasoning the design reaches on the track."""
    kept: dict[str, list] = {}
    for s in model.settings(specs, track):
        p = plan(model, specs, design, s)
        if p is not None and len(kept.setdefault(p.reasoning, [])) < per_reasoning:
            kept[p.reasoning].append(s)
    return [draft(model, specs, design, s, assigned_topic(model, design, s)) for group in kept.values() for s in group]


def _row(specs, x, design, track):
    """The question row the offline backend writes for this draft."""
    cell = CellRequest(x.topic, track, design.zone, design.level, 1, specs.generation.seed)
    return ItemModelGenerator().row(specs, cell, x)


@pytest.mark.parametrize("mid", MODELS)
def test_item_model_references_resolve(specs, mid):
    item_models()[mid].check_against(specs)


@pytest.mark.parametrize("mid,did,track", list(_cases()))
def test_design_renders_whole_questions(specs, mid, did, track):
    model = item_models()[mid]
    design = next(d for d in model.spec.questions if d.id == did)
    drafts = _drafts(specs, model, design, track)
    assert drafts, f"{mid}/{did} renders no question on {track}: every setting fails its `when` or lacks a figure"
    level = specs.level_by_id[design.level]
    for x in drafts:
        where = f"{mid}/{did} on {track} at {x.setting.key}"
        assert recompute([s.as_dict() for s in x.calc]) == [], where
        assert x.calc[-1].name == design.answer, where
        assert abs(x.mistake_value - x.answer.value) > 0.1 * abs(x.answer.value), where
        for text in (x.title, x.scenario, x.question, x.realistic_solution, x.common_mistake, x.napkin_math):
            assert "{" not in text and "}" not in text and not re.search(r"\bnan\b", text, re.I), (
                f"{where}: template residue in {text[:80]!r}"
            )
        assert x.question.count("?") == 1 and x.question.endswith("?"), where
        assert len(x.title) <= 120, where
        derived = sum(1 for s in x.calc if s.kind == "derived")
        lo, hi = level.steps
        assert lo - 1 <= derived <= hi + 2, f"{where}: {derived} derived steps for {design.level} ({lo}-{hi})"
        row = _row(specs, x, design, track)
        for check in (coherence, structure):
            if check is None:
                continue
            verdict = check(row, specs)
            assert verdict.passed, f"{where}: {verdict.criterion}: {verdict.reason}"


@pytest.mark.parametrize("mid", MODELS)
def test_every_misconception_is_asked_and_computes(specs, mid):
    """A misconception no design uses is dead text; one that is used builds a chain that recomputes."""
    model = item_models()[mid]
    used = {d.mistake for d in model.spec.questions}
    assert set(model.spec.misconceptions) <= used, (
        f"{mid}: misconceptions no design asks: {sorted(set(model.spec.misconceptions) - used)}"
    )
    for d in model.spec.questions:
        for track in d.tracks or model.spec.tracks:
            for s in model.settings(specs, track):
                p = plan(model, specs, d, s)
                if p is not None:
                    assert recompute([st.as_dict() for st in p.wrong_calc.steps]) == [], (
                        f"{mid}/{d.id}/{d.mistake} on {track}"
                    )
                    break


def test_every_design_is_distinct_reasoning(specs):
    """Within an item model no two designs share zone, level and answer: each asks something else."""
    for mid in MODELS:
        seen = {}
        for d in item_models()[mid].spec.questions:
            key = (d.zone, d.level, d.answer)
            assert key not in seen, f"{mid}: designs {seen.get(key)} and {d.id} ask the same thing"
            seen[key] = d.id


def test_bad_item_model_names_file_and_problem(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "id: broken\ntopics: [kv-cache-management]\ntracks: [cloud]\nsummary: a model that is broken on purpose\n"
        "calc:\n  - {name: x, value: 1, unit: GB, label: x, why: because}\n"
        "misconceptions:\n  m: {pitfall: p, rationale: r, consequence: c}\n"
        "questions:\n  - {id: q, zone: quantify, level: L3, answer: y, mistake: m, title: t, scenario: s,"
        " question: 'q?', solution: s, conclusion: c}\n"
    )
    with pytest.raises(ItemModelError, match=r"broken.yaml: questions.q: answer 'y' is not a calc step"):
        ItemModel.load(bad)
    bad.write_text("id: broken\ntopics: [x]\n")
    with pytest.raises(ItemModelError, match=r"broken.yaml: tracks: Field required"):
        ItemModel.load(bad)


def test_generation_refuses_an_item_model_whose_references_do_not_resolve(specs, tmp_path, monkeypatch):
    """A design at a level outside its zone's levels is a spec error naming the file, not an empty cell."""
    import shutil

    from staffml_dagster.core.item_model import _load_all

    assets = tmp_path / "assets"
    (assets / "item_models").mkdir(parents=True)
    text = (
        (item_models()["kv-cache-sessions"].path)
        .read_text()
        .replace("zone: recall\n    level: L1", "zone: recall\n    level: L5")
    )
    (assets / "item_models" / "kv-cache-sessions.yaml").write_text(text)
    shutil.copytree(item_models()["kv-cache-sessions"].path.parents[1] / "prompts", assets / "prompts")
    monkeypatch.setenv("STAFFML_ASSETS_DIR", str(assets))
    _load_all.cache_clear()
    try:
        with pytest.raises(
            ItemModelError, match=r"kv-cache-sessions.yaml: questions.kv-heads-recall: level L5 is outside zone recall"
        ):
            ItemModelGenerator().generate(specs, CellRequest("kv-cache-management", "cloud", "recall", "L5", 1, 1))
    finally:
        _load_all.cache_clear()


def test_a_microcontroller_question_names_the_parts_own_kernels(specs):
    """CMSIS-NN on a Cortex-M, ESP-NN on the ESP32-S3: the kernel library comes from the part's specs."""
    model = item_models()["tensor-arena-sram-layout"]
    design = model.spec.questions[0]
    seen = {}
    for s in model.settings(specs, "tinyml"):
        p = plan(model, specs, design, s)
        if p is not None:
            seen.setdefault(s.platform.id, draft(model, specs, design, s, assigned_topic(model, design, s)).scenario)
    assert "ESP-NN" in seen["esp32-s3"] and "CMSIS" not in seen["esp32-s3"]
    assert "CMSIS-NN" in seen["cortex-m4"] and "ESP-NN" not in seen["cortex-m4"]


def test_gpu_kernels_are_charged_the_gpus_share_of_a_jetson(specs):
    """`compute.int8_gpu|default`: a Jetson's GPU figure, not its GPU-plus-DLA module total;
    a part that lists no split falls back to its default precision."""
    model = item_models()["depthwise-separable-cost-and-memory"]
    peaks = {}
    for track in ("edge", "cloud"):
        for s in model.settings(specs, track):
            peaks.setdefault(s.platform.id, model.build(specs, s).get("peak"))
    assert peaks["jetson-orin-nx"].value == 30 < specs.platform_by_id["jetson-orin-nx"].compute["int8"].value
    assert peaks["jetson-orin-nx"].source.endswith("jetson-orin-nx.compute.int8_gpu")
    h100 = specs.platform_by_id["h100-sxm"]
    assert peaks["h100-sxm"].value == h100.compute[h100.default_precision].value
    assert peaks["h100-sxm"].source.endswith(f"h100-sxm.compute.{h100.default_precision}")


def test_rendered_prose_reads_as_written():
    """Articles, whole millions and singular units after the values are filled in."""
    from staffml_dagster.core.item_model import polish

    assert (
        polish("Of a 86% accuracy on a Arm core, a 11 ms stall") == "Of an 86% accuracy on an Arm core, an 11 ms stall"
    )
    assert polish("a one-shot all-reduce, a 180 ms budget, a user") == "a one-shot all-reduce, a 180 ms budget, a user"
    assert (
        polish("about 12.0 million USD over 1 days, not 11 days or 2.5 million")
        == "about 12 million USD over 1 day, not 11 days or 2.5 million"
    )
    assert (
        polish("at 30 Hz that is 1 frames; weights are 1 bytes each, 21 bytes in all")
        == "at 30 Hz that is 1 frame; weights are 1 byte each, 21 bytes in all"
    )
    assert (
        polish("A 86% share. It adds a column to A and a row to B")
        == "An 86% share. It adds a column to A and a row to B"
    )


def test_an_item_model_may_pick_its_workloads_per_track(specs):
    """`vary.workload.ids` per track: a phone fine-tunes BERT-Base while the cloud designs keep their
    decoders, and a track the mapping leaves out gets no workload at all."""
    model = item_models()["activation-memory-recompute"]
    by_track = {t: {s.workload.id for s in model.settings(specs, t)} for t in ("cloud", "edge", "mobile", "tinyml")}
    assert by_track["mobile"] == {"bert-base"}
    assert "bert-base" not in by_track["cloud"] and "llama-3-8b" in by_track["cloud"]
    assert by_track["tinyml"] == set()


def test_a_workload_id_that_does_not_exist_names_the_file_and_the_track(specs, tmp_path):
    text = (
        item_models()["activation-memory-recompute"]
        .path.read_text()
        .replace("mobile: [bert-base]", "mobile: [bert-basic]")
    )
    bad = tmp_path / "activation-memory-recompute.yaml"
    bad.write_text(text)
    with pytest.raises(
        ItemModelError,
        match=r"activation-memory-recompute.yaml: vary.workload.ids.mobile: unknown workload 'bert-basic'",
    ):
        ItemModel.load(bad).check_against(specs)


def test_one_topic_parses_only_the_files_that_name_it(monkeypatch):
    """models_for_topic and item_model read only the files they need, and find what the
    whole registry finds."""
    from staffml_dagster.core import item_model as im

    everything = item_models()
    parsed = []
    real = im.ItemModel.load
    monkeypatch.setattr(im, "_load_version", im._load_version.__wrapped__)  # no cache: count every parse
    monkeypatch.setattr(im.ItemModel, "load", classmethod(lambda cls, path: parsed.append(path.stem) or real(path)))
    for topic, track in (("kv-cache-management", "cloud"), ("roofline-analysis", "mobile")):
        parsed.clear()
        found = im.models_for_topic(topic, track)
        expected = [
            m
            for m in everything.values()
            if track in m.tracks
            and (topic in m.spec.topics or any(topic in (d.topics or []) for d in m.spec.questions))
        ]
        assert [m.id for m in found] == [m.id for m in expected] and found
        assert len(parsed) < len(everything) / 4, parsed
    parsed.clear()
    assert im.item_model("kv-cache-sessions").id == "kv-cache-sessions" and parsed == ["kv-cache-sessions"]
    assert im.item_model("no-such-model") is None and im.item_model("../specs/quality") is None
