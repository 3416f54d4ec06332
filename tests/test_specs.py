"""Spec loading: the real specs load; each kind of bad spec fails naming file, key and problem."""

import re

import pytest
import yaml

from staffml_dagster.specs import LEVEL_IDS, SpecError, derive_zones, load_specs


def test_real_specs_load(specs):
    assert len(specs.topics.topics) == 86
    assert len({t.area for t in specs.topics.topics}) == 13
    assert {t.id for t in specs.tracks.tracks} == {"cloud", "edge", "mobile", "tinyml"}
    assert [lv.id for lv in specs.levels.levels] == list(LEVEL_IDS)
    for track in ("cloud", "edge", "mobile", "tinyml"):
        assert len(specs.platforms_for(track)) >= 3, track


def test_hardware_figures_carry_units_and_sources(specs):
    h100 = specs.platform_by_id["h100-sxm"]
    assert h100.memory_bandwidth.q.to("TB/s").magnitude == pytest.approx(3.35)
    ridge = (h100.compute["fp16"].q / h100.memory_bandwidth.q).to("FLOP/byte").magnitude
    assert ridge == pytest.approx(295, rel=0.01)
    for p in specs.hardware.platforms:
        assert p.memory.q.check("[information]"), p.id
        if (
            p.kind == "npu"
        ):  # an NPU inside a larger part: its MAC-array geometry is the point, bandwidth and power are the part's
            g = {name: fig.value for name, fig in p.geometry.items()}
            # one micro-block of outputs, each reducing dot-width input channels, is the whole array
            assert (
                g["npu_ublock_height"] * g["npu_ublock_width"] * g["npu_ublock_depth"] * g["npu_dot_width"]
                == g["npu_macs_per_cycle"]
            ), p.id
            if p.clock is not None:  # a derived peak: MACs per cycle x 2 operations x clock
                peak = (2 * g["npu_macs_per_cycle"] * p.clock.q).to("GHz").magnitude
                assert p.compute["int8"].q.to("GOPS").magnitude == pytest.approx(peak), p.id
            continue
        if p.memory_bandwidth is None:  # host-attached: weights on chip, the PCIe lane is a link, not a memory
            assert (
                p.kind == "accelerator"
                and p.interconnect
                and specs.interconnect_by_id[p.interconnect].scope == "host-bus"
            ), p.id
            continue
        assert p.memory_bandwidth.q.check("[information]/[time]"), p.id
        assert p.power.q.check("[power]"), p.id


def _edit(specs_dir, name, mutate):
    path = specs_dir / name
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _fails(specs_dir, file, key_pattern, problem_pattern):
    with pytest.raises(SpecError) as info:
        load_specs(specs_dir)
    err = info.value
    assert err.file == file
    assert re.search(key_pattern, err.key), err.key
    assert re.search(problem_pattern, err.problem), err.problem
    return err


def test_missing_file(specs_copy):
    (specs_copy / "levels.yaml").unlink()
    _fails(specs_copy, "levels.yaml", "<file>", "not found")


def test_invalid_yaml_names_line(specs_copy):
    (specs_copy / "skills.yaml").write_text("skills:\n  - id: recall\n   description: [unclosed\n")
    _fails(specs_copy, "skills.yaml", r"line \d+", "not valid YAML")


def test_unknown_unit(specs_copy):
    _edit(specs_copy, "hardware.yaml", lambda d: d["platforms"][0]["memory_bandwidth"].update(unit="TB/fortnightz"))
    _fails(specs_copy, "hardware.yaml", r"platforms\[0\]\(.+\)\.memory_bandwidth\.unit", "unknown unit")


def test_negative_figure(specs_copy):
    _edit(specs_copy, "hardware.yaml", lambda d: d["platforms"][1]["power"].update(value=-5))
    _fails(specs_copy, "hardware.yaml", r"platforms\[1\].*power\.value", "greater than 0")


def test_missing_key(specs_copy):
    _edit(specs_copy, "topics.yaml", lambda d: d["topics"][3].pop("description"))
    _fails(specs_copy, "topics.yaml", r"topics\[3\]\(.+\)\.description", "required")


def test_unknown_substrate(specs_copy):
    _edit(specs_copy, "topics.yaml", lambda d: d["topics"][0].update(requires=["warp-drive"]))
    _fails(specs_copy, "topics.yaml", r"topics\[0\].*requires", "unknown substrate 'warp-drive'")


def test_edge_to_unknown_topic(specs_copy):
    _edit(specs_copy, "topics.yaml", lambda d: d["topics"][5].update(related=["no-such-topic"]))
    _fails(specs_copy, "topics.yaml", r"related", "unknown topic 'no-such-topic'")


def test_prerequisite_cycle_detected(specs_copy):
    def cycle(d):
        by_id = {t["id"]: t for t in d["topics"]}
        by_id["roofline-analysis"]["prerequisites"] = ["gpu-compute-architecture"]
        by_id["gpu-compute-architecture"]["prerequisites"] = ["roofline-analysis"]

    _edit(specs_copy, "topics.yaml", cycle)
    err = _fails(specs_copy, "topics.yaml", "prerequisites", "cycle")
    assert "roofline-analysis" in err.problem and "gpu-compute-architecture" in err.problem


def test_duplicate_id(specs_copy):
    _edit(specs_copy, "hardware.yaml", lambda d: d["platforms"].append(dict(d["platforms"][0])))
    _fails(specs_copy, "hardware.yaml", "platforms", "duplicate id")


def test_platform_on_unknown_track(specs_copy):
    _edit(specs_copy, "hardware.yaml", lambda d: d["platforms"][0].update(track="space"))
    _fails(specs_copy, "hardware.yaml", r"platforms\[0\].*track", "unknown track 'space'")


def test_unknown_level_in_zone(specs_copy):
    _edit(specs_copy, "zones.yaml", lambda d: d["singles"]["recall"].update(levels=["L9"]))
    _fails(specs_copy, "zones.yaml", r"singles\.recall\.levels", "unknown level 'L9'")


def test_missing_pair_zone(specs_copy):
    _edit(specs_copy, "zones.yaml", lambda d: d["pairs"].pop("evaluation"))
    _fails(specs_copy, "zones.yaml", "pairs", "no zone is named for the skill pair design \\+ quantify")


def test_zone_derivation(specs):
    zones = derive_zones(specs.skills, specs.zones_spec)
    assert len(zones) == 12
    assert [z.id for z in zones if z.kind == "single"] == ["recall", "analyze", "design", "quantify"]
    pairs = [frozenset(z.skills) for z in zones if z.kind == "pair"]
    assert len(pairs) == 6 == len(set(pairs))
    assert {z.id: z.skills for z in zones}["diagnosis"] == ("recall", "analyze")
    assert {z.id for z in zones if z.kind == "integration"} == {"mastery", "debug"}


def test_adding_a_skill_demands_new_pair_names(specs):
    skills = specs.skills.model_copy(
        update={"skills": [*specs.skills.skills, specs.skills.skills[0].model_copy(update={"id": "communicate"})]}
    )
    with pytest.raises(SpecError, match="singles"):
        derive_zones(skills, specs.zones_spec)


def test_gap_priority_zone_must_exist(specs_copy):
    _edit(specs_copy, "generation.yaml", lambda d: d["gap_priority"].update(zones=["mastery", "optimisation"]))
    _fails(specs_copy, "generation.yaml", r"gap_priority\.zones\[1\]", "unknown zone 'optimisation'")


def test_critical_topics_are_declared(specs):
    critical = {t.id for t in specs.topics.topics if t.critical}
    assert {"roofline-analysis", "vram-budgeting", "latency-decomposition"} <= critical
    assert specs.generation.gap_priority.zones == ["mastery", "optimization"]


def _platform(data, pid):
    return next(p for p in data["platforms"] if p["id"] == pid)


def test_on_chip_memory_must_be_a_size(specs_copy):
    _edit(
        specs_copy,
        "hardware.yaml",
        lambda d: _platform(d, "a17-pro")["on_chip"]["threadgroup_memory"].update(value=32, unit="GB/s"),
    )
    _fails(
        specs_copy,
        "hardware.yaml",
        r"platforms\[\d+\]\(a17-pro\)\.on_chip\.threadgroup_memory",
        r"unit 'GB/s' measures .*, but a size needs \[information\]",
    )


def test_on_chip_memory_needs_a_source(specs_copy):
    _edit(specs_copy, "hardware.yaml", lambda d: _platform(d, "cortex-m7")["on_chip"]["dtcm"].pop("source"))
    _fails(specs_copy, "hardware.yaml", r"platforms\[\d+\]\(cortex-m7\)\.on_chip\.dtcm\.source", "required")


def test_geometry_must_be_a_whole_count(specs_copy):
    _edit(specs_copy, "hardware.yaml", lambda d: _platform(d, "a16-bionic")["geometry"]["gpu_cores"].update(value=5.5))
    _fails(
        specs_copy,
        "hardware.yaml",
        r"platforms\[\d+\]\(a16-bionic\)\.geometry",
        r"'gpu_cores' is 5.5 count, not a whole count",
    )


def test_on_chip_and_geometry_paths_resolve_like_compute_paths(specs):
    from staffml_dagster.core.item_model import _figure_path, _platform_figure
    from staffml_dagster.quality.criteria import hardware_figure

    orin, a17 = specs.platform_by_id["jetson-agx-orin"], specs.platform_by_id["a17-pro"]
    path = "on_chip.threadgroup_memory|shared_memory_per_sm"
    assert _platform_figure(a17, path).q.to("byte").magnitude == 32768
    assert _platform_figure(orin, path).q.to("KiB").magnitude == 164
    assert _figure_path(orin, path) == "on_chip.shared_memory_per_sm"
    assert _platform_figure(a17, "geometry.gpu_cores").value == 6
    assert _platform_figure(specs.platform_by_id["h100-sxm"], path).q.to("KiB").magnitude == 228
    assert _platform_figure(specs.platform_by_id["mi300x"], path) is None  # a part without it is skipped, not guessed
    assert (
        hardware_figure(specs, "specs/hardware.yaml: a17-pro.on_chip.threadgroup_memory")
        is a17.on_chip["threadgroup_memory"]
    )
    assert hardware_figure(specs, "specs/hardware.yaml: a17-pro.geometry.simd_width").value == 32


# ------------------------------------------------------- every spec error found before a run


def test_duplicate_key_is_refused_not_silently_overwritten(specs_copy):
    """A second `memory:` under h100-sxm used to win silently (80 GB became 8 GB)."""
    path = specs_copy / "hardware.yaml"
    first = '    memory: {value: 80, unit: GB, source: "NVIDIA H100 Tensor Core GPU datasheet"}\n'
    text = path.read_text()
    assert text.count(first) == 1
    path.write_text(text.replace(first, first + '    memory: {value: 8, unit: GB, source: "a typo"}\n'))
    line = text[: text.index(first)].count("\n") + 1
    err = _fails(
        specs_copy,
        "hardware.yaml",
        rf"line {line + 1}, column \d+",
        rf"duplicate key 'memory' \(first written on line {line}\)",
    )
    assert str(err).startswith("hardware.yaml: line ")


def test_duplicate_key_inside_a_flow_mapping(specs_copy):
    path = specs_copy / "generation.yaml"
    path.write_text(path.read_text().replace("round_size: 6", "round_size: 6\n  round_size: 60"))
    _fails(specs_copy, "generation.yaml", r"line \d+", "duplicate key 'round_size'")


@pytest.mark.parametrize(
    "file, mutate, key",
    [
        (
            "hardware.yaml",
            lambda d: d["platforms"][0]["memory_bandwidth"].update(value=float("inf")),
            r"platforms\[0\]\(h100-sxm\)\.memory_bandwidth\.value",
        ),
        (
            "hardware.yaml",
            lambda d: d["platforms"][0]["compute"]["fp16"].update(value=float("nan")),
            r"platforms\[0\]\(h100-sxm\)\.compute\.fp16\.value",
        ),
        (
            "tracks.yaml",
            lambda d: d["tracks"][0]["scale_points"]["batch"].__setitem__(0, float("inf")),
            r"tracks\[0\]\(cloud\)\.scale_points\.batch\[0\]",
        ),
        ("quality.yaml", lambda d: d.update(similarity_threshold=float("nan")), r"^similarity_threshold$"),
    ],
)
def test_non_finite_numbers_are_refused(specs_copy, file, mutate, key):
    _edit(specs_copy, file, mutate)
    assert ".inf" in (specs_copy / file).read_text() or ".nan" in (specs_copy / file).read_text()
    _fails(specs_copy, file, key, r"not a finite number")


@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_batch_size_is_refused(specs_copy, value):
    """A batch of -1 used to produce 'the scheduler runs -1 sequences at once'."""
    _edit(specs_copy, "tracks.yaml", lambda d: d["tracks"][0]["scale_points"]["batch"].__setitem__(1, value))
    _fails(specs_copy, "tracks.yaml", r"tracks\[0\]\(cloud\)\.scale_points\.batch\[1\]", "greater than 0")


def test_empty_scale_axis_is_refused(specs_copy):
    _edit(specs_copy, "tracks.yaml", lambda d: d["tracks"][1]["scale_points"].update(batch=[]))
    _fails(specs_copy, "tracks.yaml", r"tracks\[1\]\(edge\)\.scale_points\.batch", "at least 1")


@pytest.mark.parametrize(
    "file, mutate, key, problem",
    [
        (
            "hardware.yaml",
            lambda d: d["platforms"][0]["memory_bandwidth"].update(unit="GB"),
            r"platforms\[0\]\(h100-sxm\)\.memory_bandwidth",
            r"unit 'GB' measures \[information\], but a bandwidth needs \[information\] / \[time\]",
        ),
        (
            "hardware.yaml",
            lambda d: d["platforms"][0]["memory"].update(unit="GB/s"),
            r"platforms\[0\]\(h100-sxm\)\.memory",
            "a size needs",
        ),
        (
            "hardware.yaml",
            lambda d: d["platforms"][0]["compute"]["fp16"].update(unit="TB/s"),
            r"compute\.fp16",
            "a compute rate needs",
        ),
        (
            "hardware.yaml",
            lambda d: d["platforms"][0]["power"].update(unit="J"),
            r"platforms\[0\]\(h100-sxm\)\.power",
            "a power needs",
        ),
        (
            "hardware.yaml",
            lambda d: d["interconnects"][0]["bandwidth"].update(unit="Gbit"),
            r"interconnects\[0\]\(.+\)\.bandwidth",
            "a bandwidth needs",
        ),
        (
            "tracks.yaml",
            lambda d: d["tracks"][0]["scale"]["latency_budget"].update(unit="MB"),
            r"tracks\[0\]\(cloud\)\.scale\.latency_budget",
            "a duration needs",
        ),
        (
            "workloads.yaml",
            lambda d: d["workloads"][0]["flops_per_inference"].update(unit="GB"),
            r"workloads\[0\]\(.+\)\.flops_per_inference",
            "an operation count needs",
        ),
    ],
)
def test_unit_of_the_wrong_dimension_is_refused_at_load(specs_copy, file, mutate, key, problem):
    _edit(specs_copy, file, mutate)
    _fails(specs_copy, file, key, problem)


@pytest.mark.parametrize(
    "file, mutate, key",
    [
        ("topics.yaml", lambda d: d.update(topics=[]), "^topics$"),
        ("topics.yaml", lambda d: d.update(areas=[]), "^areas$"),
        ("hardware.yaml", lambda d: d.update(platforms=[]), "^platforms$"),
    ],
)
def test_empty_lists_are_refused(specs_copy, file, mutate, key):
    _edit(specs_copy, file, mutate)
    _fails(specs_copy, file, key, "at least 1")


def test_non_utf8_spec_names_the_file(specs_copy):
    path = specs_copy / "topics.yaml"
    text = path.read_text()
    path.write_bytes(text.encode("utf-8").replace(b"areas:", "areas: # caf\u00e9\n".encode("latin-1") + b"areas:", 1))
    _fails(specs_copy, "topics.yaml", r"line \d+", r"not UTF-8 text \(byte 0xe9")


def test_readme_example_of_an_unknown_unit_is_refused(specs_copy):
    """The README promises a message for an unknown unit; its example must really be unknown."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(
        r"`(hardware\.yaml: platforms\[0\]\(h100-sxm\)\.memory_bandwidth\.unit: unknown unit '([^']+)')`", readme
    )
    assert example, "README's spec error example not found"
    _edit(specs_copy, "hardware.yaml", lambda d: d["platforms"][0]["memory_bandwidth"].update(unit=example.group(2)))
    with pytest.raises(SpecError) as info:
        load_specs(specs_copy)
    assert str(info.value).startswith(example.group(1))


def test_item_models_are_checked_and_reject_duplicate_keys(specs, tmp_path):
    from staffml_dagster.core.item_model import ItemModelError, _load_all, check_item_models, item_models

    assert check_item_models(specs) == len(item_models())
    source = item_models()["kv-cache-sessions"].path
    text = source.read_text()
    assert "\n    zone: recall\n" in text
    (tmp_path / source.name).write_text(
        text.replace("\n    zone: recall\n", "\n    zone: recall\n    zone: design\n", 1)
    )
    try:
        with pytest.raises(
            ItemModelError,
            match=r"kv-cache-sessions.yaml: line \d+, column \d+: not valid YAML: duplicate key 'zone' "
            r"\(first written on line \d+\)",
        ):
            check_item_models(specs, tmp_path)
    finally:
        _load_all.cache_clear()


def test_only_an_npu_subsystem_may_leave_out_its_power(specs_copy):
    _edit(specs_copy, "hardware.yaml", lambda d: _platform(d, "cortex-m4").pop("power"))
    _fails(specs_copy, "hardware.yaml", r"platforms\[\d+\]\(cortex-m4\)", r"power is missing; only an npu subsystem")
