"""Each validator fires on a crafted bad question and passes the good one."""

import copy
import json

import pandas as pd
import pytest

from staffml_dagster.generation.offline import ItemModelGenerator
from staffml_dagster.generation.backend import CellRequest
from staffml_dagster.quality.criteria import (
    computability, distinctness, falsifiability, grounding, hygiene, specificity, tfidf_embed, validate_questions,
)
from tests.conftest import REFERENCE


@pytest.fixture(scope="module")
def good(specs):
    rows = ItemModelGenerator().generate(specs, CellRequest("kv-cache-management", "cloud", "quantify", "L3", 3, specs.generation.seed))
    assert len(rows) == 3
    return rows


def _all(row, specs):
    return [specificity(row, specs), grounding(row, specs), falsifiability(row), computability(row), hygiene(row, specs)]


def test_good_questions_pass_every_criterion(good, specs):
    for row in good:
        assert [v.reason for v in _all(row, specs) if not v.passed] == []
    assert all(v.passed for v in distinctness(pd.DataFrame(good), specs.quality.similarity_threshold))


def test_wrong_number_fails_computability(good):
    bad = copy.deepcopy(good[0])
    derived = next(i for i, s in enumerate(bad["calc"]) if s["kind"] == "derived")
    bad["calc"][derived]["value"] *= 1.5
    verdict = computability(bad)
    assert not verdict.passed and bad["calc"][derived]["name"] in verdict.reason
    bad = copy.deepcopy(good[0])
    bad["answer_value"] *= 2
    assert "stated answer" in computability(bad).reason


def test_wrong_hardware_figure_fails_grounding(good, specs):
    bad = copy.deepcopy(good[0])
    i = next(i for i, s in enumerate(bad["calc"]) if s["source"].startswith("specs/hardware.yaml"))
    bad["calc"][i]["value"] = bad["calc"][i]["value"] * 1.3
    verdict = grounding(bad, specs)
    assert not verdict.passed and "specs say" in verdict.reason


def test_off_track_platform_fails_grounding_and_hygiene(good, specs):
    bad = copy.deepcopy(good[0])
    bad["track"] = "tinyml"
    assert "belongs to cloud, not tinyml" in grounding(bad, specs).reason
    assert "another track" in hygiene(bad, specs).reason
    text_only = {**good[0], "scenario": good[0]["scenario"] + " The prototype ran on an ESP32-S3 first."}
    assert "esp32-s3" in hygiene(text_only, specs).reason


def test_link_and_economics_sources_are_checked_against_specs(specs):
    nvlink = specs.interconnect_by_id["nvlink4"].bandwidth
    good = [{"name": "link", "expression": f"{nvlink.value:g} GB/s", "value": nvlink.value, "unit": "GB/s", "label": "NVLink 4 per direction",
             "source": "specs/hardware.yaml: interconnects.nvlink4.bandwidth", "kind": "given"},
            {"name": "pue", "expression": "1.2", "value": 1.2, "unit": "", "label": "PUE", "source": "specs/hardware.yaml: economics.pue", "kind": "given"}]
    assert grounding({"track": "cloud", "platforms": [], "calc": good}, specs).passed
    bad = [dict(good[0], value=900.0, expression="900 GB/s"), dict(good[1], source="specs/hardware.yaml: economics.nonexistent")]
    reason = grounding({"track": "cloud", "platforms": [], "calc": bad}, specs).reason
    assert "states 900.0 GB/s for interconnects.nvlink4.bandwidth; specs say 450 GB/s" in reason
    assert "economics.nonexistent, which specs/hardware.yaml does not have" in reason


def test_cited_figure_in_text_must_match_specs(specs):
    row = {"track": "cloud", "platforms": [], "scenario": "The H100 has 60 GB of HBM in this rack.", "realistic_solution": "", "napkin_math": ""}
    assert "matches none of its figures" in grounding(row, specs).reason
    row["scenario"] = "The H100 has 80 GB of HBM in this rack."
    assert grounding(row, specs).passed


def test_missing_mistake_and_mistake_equal_to_answer_fail_falsifiability(good):
    bad = copy.deepcopy(good[0])
    bad["common_mistake"] = ""
    assert "no common mistake" in falsifiability(bad).reason
    bad = copy.deepcopy(good[0])
    bad["mistake_value"] = bad["answer_value"]
    assert "equals the answer" in falsifiability(bad).reason


def test_truncated_scenario_and_template_title_fail_hygiene(good, specs):
    bad = copy.deepcopy(good[0])
    bad["scenario"] = bad["scenario"][: len(bad["scenario"]) // 2].rstrip(" .") + " and the"
    assert "ends mid-sentence" in hygiene(bad, specs).reason
    bad = copy.deepcopy(good[0])
    bad["title"] = "Kv Cache Management L3 0001"
    assert "template" in hygiene(bad, specs).reason
    bad = copy.deepcopy(good[0])
    bad["competency_area"] = "power"
    assert "does not match topic" in hygiene(bad, specs).reason


def test_two_questions_in_one_and_level_outside_affinity_fail_specificity(good, specs):
    bad = copy.deepcopy(good[0])
    bad["question"] = "What is the KV cache size and why does it grow with context?"
    assert "more than one thing" in specificity(bad, specs).reason
    bad = copy.deepcopy(good[0])
    bad["level"] = "L6+"
    assert "not L6+" in specificity(bad, specs).reason


def test_near_duplicate_fails_distinctness(good, specs):
    twin = copy.deepcopy(good[0])
    twin["id"] = "twin"
    twin["signature"] = "something-else"
    twin["scenario"] = twin["scenario"].replace("serves", "runs", 1)
    verdicts = distinctness(pd.DataFrame([good[0], twin]), specs.quality.similarity_threshold)
    assert verdicts[0].passed and not verdicts[1].passed and "cosine similarity" in verdicts[1].reason
    same_path = {**copy.deepcopy(good[1]), "id": "copy", "signature": good[0]["signature"]}
    assert "same solution path" in distinctness(pd.DataFrame([good[0], same_path]), 0.999)[1].reason


def test_validate_keeps_failures_with_reasons(good, specs):
    bad = {**copy.deepcopy(good[1]), "common_mistake": "", "id": "bad"}
    out = validate_questions(pd.DataFrame([good[0], bad]), specs, tfidf_embed)
    assert len(out) == 2
    assert list(out["passed"]) == [True, False]
    assert any(f.startswith("falsifiability:") for f in out.iloc[1]["failures"])


SAMPLE = REFERENCE / "staffml_questions_sample.jsonl"


@pytest.mark.skipif(not SAMPLE.exists(), reason="reference sample not present")
def test_report_on_published_staffml_sample(specs):
    """A report, not a threshold: how the free-text criteria judge 40 published questions."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("track") in specs.track_by_id]
    for r in rows:
        r.setdefault("platforms", [])
        r["level"] = r.get("level", "")
    results = {name: [fn(r) for r in rows] for name, fn in {
        "specificity": lambda r: specificity(r, specs),
        "grounding": lambda r: grounding(r, specs),
        "falsifiability": falsifiability,
        "hygiene": lambda r: hygiene(r, specs),
    }.items()}
    print(f"\nStaffML sample: {len(rows)} questions on our four tracks")
    for name, verdicts in results.items():
        rate = sum(v.passed for v in verdicts) / len(verdicts)
        example = next((v.reason for v in verdicts if not v.passed), "")
        print(f"  {name:15s} pass rate {rate:.0%}  e.g. {example[:110]}")
    assert all(len(v) == len(rows) for v in results.values())
