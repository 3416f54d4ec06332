"""benchmarks/reviews: drawing a blind-review sample (sample.py) and unblinding it (score.py)."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

REVIEWS = Path(__file__).resolve().parents[1] / "benchmarks" / "reviews"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"reviews_{name}", REVIEWS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sample = _load("sample")
score = _load("score")

OUR_NAPKIN = (
    "**Assumptions & Constraints:**   \n"
    "- HBM bandwidth: 3.35 TB/s (specs/hardware.yaml: h100_sxm.memory_bandwidth)\n"
    "- weights: 140 GB (specs/workloads.yaml: llama70b.weights (prefix misread))\n"
    "- batch: 8 (assumption: typical serving batch)\n"
    "- requests: 12 per second (scenario: arrival rate)\n\n"
    "**Calculations:**\n"
    "- time per token: `t = w / bw` = 41.8 ms\n\n"
    "**Conclusion:**\n"
    "Decode is memory bound at 41.8 ms per token.  "
)
PUBLISHED_NAPKIN = (
    "**Assumptions & Constraints:**\n- Frame budget: 33.3 ms\n\n"
    "**Calculations:**\n1. Contention: 30 ms + 25 ms = 55 ms\n\n"
    "**Conclusion & Interpretation:**\n- **Result: 55 ms. The frame misses its deadline.**"
)
MISTAKE = "**The Pitfall:** Using peak FLOPs.\n**The Rationale:** It looks compute bound.\n**The Consequence:** A 10x optimistic estimate."
CELLS = [("kv-cache-management", "cloud"), ("kv-cache-management", "edge"), ("quantization", "mobile")]


def corpus_rows() -> pd.DataFrame:
    rows = []
    for c, (topic, track) in enumerate(CELLS):
        for i in range(5):
            n = c * 5 + i
            rows.append({
                "id": f"gen{n:03d}x", "topic": topic, "track": track, "zone": "diagnosis", "level": "L4",
                "title": f"Generated title {n}", "scenario": f"Scenario text {n}.", "question": "Why is decode slow?",
                "realistic_solution": "It is **memory** bound.", "common_mistake": MISTAKE, "napkin_math": OUR_NAPKIN,
                # gen000x and gen001x share a signature: never both in one sample
                "signature": "sig-shared" if n < 2 else f"sig{n:03d}",
                "item_model": "imodelzz", "backend": "offlinezz",
                "grounding_ok": True, "computability_ok": n % 2 == 0, "passed": True,
            })
    return pd.DataFrame(rows)


def write_hive(root: Path, df: pd.DataFrame) -> Path:
    """<root>/corpus/topic=<t>/track=<k>/part.parquet, partition columns only in the path."""
    for (topic, track), part in df.groupby(["topic", "track"]):
        d = root / "corpus" / f"topic={topic}" / f"track={track}"
        d.mkdir(parents=True)
        part.drop(columns=["topic", "track"]).to_parquet(d / "part.parquet", index=False)
    return root


def calibration_rows() -> list[dict]:
    rows = []
    for i, track in enumerate(["cloud", "edge", "mobile", "tinyml", "cloud", "edge", "global", "global"]):
        rows.append({
            "id": f"pub{i:03d}y", "track": track, "level": "L3", "zone": "diagnosis" if i != 5 else "implement",
            "topic": "real-time-deadlines", "title": f"The Published Problem {i}", "scenario": f"Published scenario {i}.",
            "question": "What breaks?", "realistic_solution": "Resource contention.", "common_mistake": MISTAKE,
            "napkin_math": PUBLISHED_NAPKIN, "status": "published", "source_path": f"vault/pub{i:03d}y.yaml",
        })
    return rows


@pytest.fixture
def inputs(tmp_path):
    warehouse = write_hive(tmp_path / "warehouse", corpus_rows())
    cal = tmp_path / "calibration.jsonl"
    cal.write_text("\n".join(json.dumps(r) for r in calibration_rows()) + "\n")
    return warehouse, cal


def draw(inputs, out: Path, seed: int = 5, n: int = 6, calibration: int = 4) -> Path:
    warehouse, cal = inputs
    return sample.sample(seed, n=n, calibration=calibration, warehouse=warehouse, out=out, calibration_file=cal)


# --------------------------------------------------------------------------- sample.py


def test_sample_renders_blind_items_with_requested_counts(inputs, tmp_path):
    out = draw(inputs, tmp_path / "reviews" / "r1")
    items = (out / "items.md").read_text()
    key = json.loads((out / "key.json").read_text())

    assert re.findall(r"^## Item (\d+)$", items, re.M) == [str(k) for k in range(1, 11)]
    assert sorted(key, key=int) == [str(k) for k in range(1, 11)]
    assert sum(e["source"] == "corpus" for e in key.values()) == 6
    assert sum(e["source"] == "staffml" for e in key.values()) == 4

    # nothing that names a row or tells the sources apart
    ids = [r["id"] for r in corpus_rows().to_dict("records")] + [r["id"] for r in calibration_rows()]
    for marker in [*ids, "sig-shared", "imodelzz", "offlinezz", "source_path", "vault/", "specs/", "assumption:", "scenario:",
                   "prefix misread", "Interpretation", "Result:", "staffml", "StaffML", "corpus", "signature"]:
        assert marker not in items, marker
    assert "`" not in items[items.index("## Item 1"):], "code markup left in an item"
    assert not re.search(r"[ \t]+$", items, re.M), "trailing whitespace"
    # every item has the same shape
    for block in items.split("## Item ")[1:]:
        assert re.findall(r"^- (\w+):", block.split("### Scenario")[0], re.M) == ["Topic", "Track", "Zone", "Level", "Title"]
        assert re.findall(r"^### (.+)$", block, re.M) == ["Scenario", "Question", "Realistic solution", "Common mistake", "Napkin math"]
        assert re.findall(r"^\*\*([^*]+):\*\*", block.split("### Napkin math")[1], re.M) == ["Assumptions & Constraints", "Calculations", "Conclusion"]

    # the key: ids, gate verdicts as booleans for corpus rows, preferred tracks for calibration
    corpus_ids = [e["id"] for e in key.values() if e["source"] == "corpus"]
    assert len(set(corpus_ids)) == 6 and not {"gen000x", "gen001x"} <= set(corpus_ids)
    for e in key.values():
        if e["source"] == "corpus":
            assert isinstance(e["grounding_ok"], bool) and isinstance(e["computability_ok"], bool) and e["passed"] is True
        else:
            assert "passed" not in e
    tracks = {r["id"]: r["track"] for r in calibration_rows()}
    zones = {r["id"]: r["zone"] for r in calibration_rows()}
    cal_ids = [e["id"] for e in key.values() if e["source"] == "staffml"]
    assert all(tracks[i] != "global" and zones[i] == "diagnosis" for i in cal_ids)
    assert "seed 5" in (out / "README.md").read_text()


def test_sample_is_deterministic_for_a_seed(inputs, tmp_path):
    a = draw(inputs, tmp_path / "reviews" / "a", seed=11)
    b = draw(inputs, tmp_path / "reviews" / "b", seed=11)
    c = draw(inputs, tmp_path / "reviews" / "c", seed=12)
    assert (a / "items.md").read_text() == (b / "items.md").read_text()
    assert (a / "key.json").read_text() == (b / "key.json").read_text()
    assert (a / "key.json").read_text() != (c / "key.json").read_text()


def test_sample_reads_a_single_corpus_file(tmp_path):
    cal = tmp_path / "cal.jsonl"
    cal.write_text("\n".join(json.dumps(r) for r in calibration_rows()))
    (tmp_path / "wh" / "corpus").mkdir(parents=True)
    corpus_rows().to_parquet(tmp_path / "wh" / "corpus" / "part.parquet", index=False)
    out = sample.sample(3, n=4, calibration=2, warehouse=tmp_path / "wh", out=tmp_path / "out", calibration_file=cal)
    assert len(json.loads((out / "key.json").read_text())) == 6


def test_sample_errors_clearly(inputs, tmp_path):
    warehouse, cal = inputs
    with pytest.raises(sample.SampleError, match="calibration set not found"):
        sample.sample(1, n=3, calibration=2, warehouse=warehouse, out=tmp_path / "x", calibration_file=tmp_path / "absent.jsonl")
    # no calibration asked: the file is not needed
    out = sample.sample(1, n=3, calibration=0, warehouse=warehouse, out=tmp_path / "y", calibration_file=tmp_path / "absent.jsonl")
    assert {e["source"] for e in json.loads((out / "key.json").read_text()).values()} == {"corpus"}
    with pytest.raises(sample.SampleError, match="distinct signatures"):
        sample.sample(2, n=15, calibration=0, warehouse=warehouse, out=tmp_path / "z", calibration_file=cal)
    with pytest.raises(sample.SampleError, match="no corpus"):
        sample.sample(2, n=1, calibration=0, warehouse=tmp_path / "nowhere", out=tmp_path / "w", calibration_file=cal)
    # a seed already used by an earlier review folder, and an existing review, are refused
    reviews = tmp_path / "reviews"
    draw(inputs, reviews / "2020-01-01-seed9", seed=9)
    with pytest.raises(sample.SampleError, match="seed 9 was already used"):
        draw(inputs, reviews / "2021-01-01-seed9", seed=9)
    with pytest.raises(sample.SampleError, match="already holds a review"):
        draw(inputs, reviews / "2020-01-01-seed9", seed=9)


def test_main_cli(inputs, tmp_path, capsys):
    warehouse, cal = inputs
    out = tmp_path / "cli"
    assert sample.main(["--seed", "4", "--n", "2", "--calibration", "1", "--warehouse", str(warehouse),
                        "--calibration-file", str(cal), "--out", str(out)]) == 0
    assert (out / "items.md").exists() and (out / "key.json").exists() and (out / "README.md").exists()
    assert sample.main(["--seed", "4", "--n", "2", "--calibration", "1", "--warehouse", str(warehouse),
                        "--calibration-file", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "cli2")]) == 2
    assert "calibration set not found" in capsys.readouterr().err


def test_both_sources_render_the_conclusion_alike():
    ours = sample.normalise_text(OUR_NAPKIN, "napkin_math")
    published = sample.normalise_text(PUBLISHED_NAPKIN, "napkin_math")
    assert ours.endswith("**Conclusion:**\nDecode is memory bound at 41.8 ms per token.")
    assert published.endswith("**Conclusion:**\n55 ms. The frame misses its deadline.")
    assert "- Contention: 30 ms + 25 ms = 55 ms" in published
    assert "- weights: 140 GB\n" in ours and "- HBM bandwidth: 3.35 TB/s\n" in ours and "- requests: 12 per second\n" in ours
    # the numbered, nested variant some published rows use renders the same way
    nested = ("1. **Assumptions & Constraints:**\n   - Frame budget: 33.3 ms\n2. **Calculations:**\n"
              "   - Contention: 30 ms + 25 ms = 55 ms\n3. **Conclusion & Interpretation:**\n"
              "   **Result: 55 ms.** The frame misses its deadline.")
    assert sample.normalise_text(nested, "napkin_math") == published


# --------------------------------------------------------------------------- score.py

PERFECT = dict(topic_fit=1, zone_fit=1, grounding=1, math_correct=1, mistake_real=1, coherent=1, staff_worthy=1)


def scored(item: int, smell: int = 0, **zeros: str) -> dict:
    entry = {"item": item, **PERFECT, "template_smell": smell, "reasons": {}}
    for criterion, reason in zeros.items():
        entry[criterion] = 0
        entry["reasons"][criterion] = reason
    return entry


def review_dir(tmp_path: Path, scores: list[dict]) -> Path:
    key = {
        "1": {"source": "corpus", "id": "q1", "grounding_ok": True, "computability_ok": True, "hygiene_ok": True, "passed": True},
        "2": {"source": "corpus", "id": "q2", "grounding_ok": True, "computability_ok": False, "hygiene_ok": True, "passed": True},
        "3": {"source": "staffml", "id": "s1"},
        "4": {"source": "corpus", "id": "q3", "grounding_ok": False, "computability_ok": True, "hygiene_ok": True, "passed": True},
        "5": {"source": "staffml", "id": "s2"},
    }
    d = tmp_path / "review"
    d.mkdir(exist_ok=True)
    (d / "key.json").write_text(json.dumps(key))
    (d / "scores.json").write_text(json.dumps(scores))
    return d


def test_score_shares_and_gate_agreement(tmp_path, capsys):
    d = review_dir(tmp_path, [
        scored(1, smell=2, grounding="A100 bandwidth is not 3.35 TB/s", staff_worthy="one formula"),
        scored(2, smell=1, math_correct="141/3.35 is 42 ms, not 4.2 ms"),
        scored(3, smell=0, topic_fit="generic ridge point", staff_worthy="too easy"),
        scored(4, smell=1),
        scored(5, smell=1, staff_worthy="incoherent setup"),
    ])
    summary = score.score(d)
    corpus, published = summary["per_source"]["corpus"], summary["per_source"]["staffml"]
    assert corpus["items"] == 3 and published["items"] == 2
    assert corpus["pass_share"]["grounding"] == pytest.approx(2 / 3)
    assert corpus["pass_share"]["math_correct"] == pytest.approx(2 / 3)
    assert corpus["pass_share"]["staff_worthy"] == pytest.approx(2 / 3)
    assert corpus["pass_share"]["topic_fit"] == 1.0
    assert corpus["template_smell_mean"] == pytest.approx(4 / 3, abs=1e-4)
    assert published["pass_share"]["topic_fit"] == 0.5 and published["pass_share"]["staff_worthy"] == 0.0
    assert published["template_smell_mean"] == 0.5

    agree = summary["gate_agreement"]
    # grounding: gate T/T/F vs reviewer 0/1/1 -> agree on item 2 only
    assert agree["grounding"]["agreement"] == pytest.approx(1 / 3, abs=1e-4)
    assert agree["grounding"]["gate_pass_reviewer_fail"] == [1] and agree["grounding"]["gate_fail_reviewer_pass"] == [4]
    # computability: gate T/F/T vs reviewer 1/0/1 -> all agree
    assert agree["math_correct"]["agreement"] == 1.0 and agree["math_correct"]["both_fail"] == 1
    # passed -> staff_worthy: gate T/T/T vs reviewer 0/1/1
    assert agree["staff_worthy"]["agreement"] == pytest.approx(2 / 3, abs=1e-4) and agree["staff_worthy"]["gate"] == "passed"
    # columns without a counterpart (hygiene_ok) or absent from the key (topic_fit_ok ...) give no agreement
    assert set(agree) == {"grounding", "math_correct", "staff_worthy"}
    assert "topic_fit_ok" in summary["gate_columns_missing"]

    # reasons for 0s on corpus items only
    assert summary["corpus_reasons"]["grounding"] == [{"item": 1, "id": "q1", "reason": "A100 bandwidth is not 3.35 TB/s"}]
    assert [r["item"] for r in summary["corpus_reasons"]["staff_worthy"]] == [1]
    assert "topic_fit" not in summary["corpus_reasons"]

    md = (d / "summary.md").read_text()
    assert "141/3.35 is 42 ms, not 4.2 ms" in md and "too easy" not in md
    assert json.loads((d / "summary.json").read_text()) == summary
    assert score.main([str(d)]) == 0
    assert "Gate vs reviewer" in capsys.readouterr().out


def test_score_rejects_duplicates_missing_and_bad_values(tmp_path, capsys):
    good = [scored(i) for i in range(1, 6)]
    d = review_dir(tmp_path, good[:2] + [scored(2)] + good[3:])  # item 2 twice, item 3 missing
    with pytest.raises(score.ScoreError) as err:
        score.score(d)
    assert "item 2: scored more than once" in str(err.value)
    assert "item(s) 3: not scored" in str(err.value)
    assert not (d / "summary.json").exists()

    bad = [scored(i) for i in range(1, 6)]
    bad[0]["grounding"] = 2
    bad[1]["template_smell"] = 3
    del bad[2]["coherent"]
    bad[3]["zone_fit"] = 0  # a 0 without a reason
    bad.append(scored(9))
    d = review_dir(tmp_path, bad)
    with pytest.raises(score.ScoreError) as err:
        score.score(d)
    msg = str(err.value)
    assert "item 1: field 'grounding' must be 0 or 1" in msg
    assert "item 2: field 'template_smell' must be 0, 1 or 2" in msg
    assert "item 3: field 'coherent' missing" in msg
    assert "item 4: field 'zone_fit' is 0 but reasons.zone_fit is missing" in msg
    assert "item 9: not in key.json" in msg
    assert score.main([str(d)]) == 2
    assert "item 1: field 'grounding'" in capsys.readouterr().err
