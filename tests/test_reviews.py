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
MISTAKE = (
    "**The Pitfall:** Using peak FLOPs.\n**The Rationale:** It looks compute bound.\n"
    "**The Consequence:** A 10x optimistic estimate."
)
CELLS = [("kv-cache-management", "cloud"), ("kv-cache-management", "edge"), ("quantization", "mobile")]


def corpus_rows() -> pd.DataFrame:
    rows = []
    for c, (topic, track) in enumerate(CELLS):
        for i in range(5):
            n = c * 5 + i
            rows.append(
                {
                    "id": f"gen{n:03d}x",
                    "topic": topic,
                    "track": track,
                    "zone": "diagnosis",
                    "level": "L4",
                    "title": f"Generated title {n}",
                    "scenario": f"Scenario text {n}.",
                    "question": "Why is decode slow?",
                    "realistic_solution": "It is **memory** bound.",
                    "common_mistake": MISTAKE,
                    "napkin_math": OUR_NAPKIN,
                    # gen000x and gen001x share a signature: never both in one sample
                    "signature": "sig-shared" if n < 2 else f"sig{n:03d}",
                    "item_model": "imodelzz",
                    "backend": "offlinezz",
                    "competency_area": "memory" if topic.startswith("kv") else "precision",
                    "grounding_ok": True,
                    "computability_ok": n % 2 == 0,
                    "passed": True,
                }
            )
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
        rows.append(
            {
                "id": f"pub{i:03d}y",
                "track": track,
                "level": "L3",
                "zone": "diagnosis" if i != 5 else "implement",
                "topic": "real-time-deadlines",
                "title": f"The Published Problem {i}",
                "scenario": f"Published scenario {i}.",
                "question": "What breaks?",
                "realistic_solution": "Resource contention.",
                "common_mistake": MISTAKE,
                "napkin_math": PUBLISHED_NAPKIN,
                "status": "published",
                "source_path": f"vault/pub{i:03d}y.yaml",
            }
        )
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


REJECTED_FAILURES = {
    "rej000z": [
        "computability: answer 4.2 ms disagrees with recomputed 41.8 ms",
        "grounding: bandwidthzz not in hardware",
    ],
    "rej001z": ["structure: L6 item is one formula"],
    "rej002z": ["topic_fit: nearest topic is roofline"],
    "rej003z": ["coherence: figure 12 unused"],
    "rej004z": ["falsifiability: mistake value equals answer"],
}


def rejected_rows() -> pd.DataFrame:
    """Rows the gate rejected: the same shape and house style as corpus rows, plus the
    verdict columns validated_questions carries (``*_ok``, ``*_reason``, ``failures``)."""
    rows = []
    for n, (rid, failures) in enumerate(REJECTED_FAILURES.items()):
        topic, track = CELLS[n % len(CELLS)]
        failed = {f.split(":")[0] for f in failures}
        row = {
            "id": rid,
            "topic": topic,
            "track": track,
            "zone": "diagnosis",
            "level": "L4",
            "title": f"Generated title {90 + n}",
            "scenario": f"Scenario text {90 + n}.",
            "question": "Why is decode slow?",
            "realistic_solution": "It is **memory** bound.",
            "common_mistake": MISTAKE,
            "napkin_math": OUR_NAPKIN,
            # rej000z and rej001z share a signature: never both in one sample
            "signature": "rsig-shared" if n < 2 else f"rsig{n:03d}",
            "item_model": "imodelzz",
            "backend": "offlinezz",
        }
        for c in ("grounding", "computability", "structure", "topic_fit", "coherence", "falsifiability"):
            row[f"{c}_ok"] = c not in failed
            row[f"{c}_reason"] = f"{c} reasonzz {n}"
        row["failures"] = failures
        row["passed"] = False
        rows.append(row)
    return pd.DataFrame(rows)


def write_validated(root: Path, corpus: pd.DataFrame, rejected: pd.DataFrame) -> Path:
    """<root>/validated_questions/topic=<t>/track=<k>/part.parquet: the corpus rows (passed,
    no failures) and the rejected ones."""
    passed = corpus.assign(failures=[[] for _ in range(len(corpus))])
    df = pd.concat([passed, rejected], ignore_index=True)
    for (topic, track), part in df.groupby(["topic", "track"]):
        d = root / "validated_questions" / f"topic={topic}" / f"track={track}"
        d.mkdir(parents=True)
        part.drop(columns=["topic", "track"]).to_parquet(d / "part.parquet", index=False)
    return root


@pytest.fixture
def inputs_with_rejected(inputs):
    warehouse, cal = inputs
    write_validated(warehouse, corpus_rows(), rejected_rows())
    return warehouse, cal


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
    for marker in [
        *ids,
        "sig-shared",
        "imodelzz",
        "offlinezz",
        "source_path",
        "vault/",
        "specs/",
        "assumption:",
        "scenario:",
        "prefix misread",
        "Interpretation",
        "Result:",
        "staffml",
        "StaffML",
        "corpus",
        "signature",
    ]:
        assert marker not in items, marker
    assert "`" not in items[items.index("## Item 1") :], "code markup left in an item"
    assert not re.search(r"[ \t]+$", items, re.M), "trailing whitespace"
    # every item has the same shape
    for block in items.split("## Item ")[1:]:
        assert re.findall(r"^- (\w+):", block.split("### Scenario")[0], re.M) == [
            "Topic",
            "Track",
            "Zone",
            "Level",
            "Title",
        ]
        assert re.findall(r"^### (.+)$", block, re.M) == [
            "Scenario",
            "Question",
            "Realistic solution",
            "Common mistake",
            "Napkin math",
        ]
        assert re.findall(r"^\*\*([^*]+):\*\*", block.split("### Napkin math")[1], re.M) == [
            "Assumptions & Constraints",
            "Calculations",
            "Conclusion",
        ]

    # the key: ids, gate verdicts as booleans for corpus rows, preferred tracks for calibration
    corpus_ids = [e["id"] for e in key.values() if e["source"] == "corpus"]
    assert len(set(corpus_ids)) == 6 and not {"gen000x", "gen001x"} <= set(corpus_ids)
    for e in key.values():
        if e["source"] == "corpus":
            assert (
                isinstance(e["grounding_ok"], bool) and isinstance(e["computability_ok"], bool) and e["passed"] is True
            )
        else:
            assert "passed" not in e
    tracks = {r["id"]: r["track"] for r in calibration_rows()}
    zones = {r["id"]: r["zone"] for r in calibration_rows()}
    cal_ids = [e["id"] for e in key.values() if e["source"] == "staffml"]
    assert all(tracks[i] != "global" and zones[i] == "diagnosis" for i in cal_ids)
    assert "seed 5" in (out / "README.md").read_text()


def test_sample_draws_only_the_areas_asked_for(inputs, tmp_path):
    warehouse, cal = inputs
    out = sample.sample(
        6, n=4, calibration=0, warehouse=warehouse, out=tmp_path / "r", calibration_file=cal, areas=["precision"]
    )
    key = json.loads((out / "key.json").read_text())
    assert len(key) == 4 and all(e["id"].startswith("gen01") for e in key.values())  # rows 10-14: the precision cell
    with pytest.raises(sample.SampleError, match="--areas nosuch"):
        sample.sample(
            7, n=2, calibration=0, warehouse=warehouse, out=tmp_path / "s", calibration_file=cal, areas=["nosuch"]
        )


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
        sample.sample(
            1, n=3, calibration=2, warehouse=warehouse, out=tmp_path / "x", calibration_file=tmp_path / "absent.jsonl"
        )
    # no calibration asked: the file is not needed
    out = sample.sample(
        1, n=3, calibration=0, warehouse=warehouse, out=tmp_path / "y", calibration_file=tmp_path / "absent.jsonl"
    )
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
    assert (
        sample.main(
            [
                "--seed",
                "4",
                "--n",
                "2",
                "--calibration",
                "1",
                "--warehouse",
                str(warehouse),
                "--calibration-file",
                str(cal),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "items.md").exists() and (out / "key.json").exists() and (out / "README.md").exists()
    assert (
        sample.main(
            [
                "--seed",
                "4",
                "--n",
                "2",
                "--calibration",
                "1",
                "--warehouse",
                str(warehouse),
                "--calibration-file",
                str(tmp_path / "none.jsonl"),
                "--out",
                str(tmp_path / "cli2"),
            ]
        )
        == 2
    )
    assert "calibration set not found" in capsys.readouterr().err


def _blocks(items_md: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r"^## Item (\d+)\n.*?(?=^## Item |\Z)", items_md, re.M | re.S)}


def test_sample_mixes_in_rejected_rows_without_a_marker(inputs_with_rejected, tmp_path):
    warehouse, cal = inputs_with_rejected
    out = sample.sample(
        5, n=6, calibration=2, warehouse=warehouse, out=tmp_path / "r", calibration_file=cal, rejected=3
    )
    items = (out / "items.md").read_text()
    key = json.loads((out / "key.json").read_text())
    assert len(key) == 11 and re.findall(r"^## Item (\d+)$", items, re.M) == [str(k) for k in range(1, 12)]
    by_source = {s: [n for n, e in key.items() if e["source"] == s] for s in ("corpus", "staffml", "rejected")}
    assert [len(v) for v in by_source.values()] == [6, 2, 3]

    # the key: gate verdicts and failures (a list of strings) for the developer
    rej_ids = [key[n]["id"] for n in by_source["rejected"]]
    assert len(set(rej_ids)) == 3 and set(rej_ids) <= set(REJECTED_FAILURES)
    assert not {"rej000z", "rej001z"} <= set(rej_ids), "two rejected rows with one signature"
    for n in by_source["rejected"]:
        e = key[n]
        assert e["passed"] is False and e["failures"] == REJECTED_FAILURES[e["id"]]
        assert all(isinstance(f, str) for f in e["failures"])
        assert isinstance(e["computability_ok"], bool) and isinstance(e["structure_ok"], bool)
        assert e["computability_ok"] == (e["id"] != "rej000z")
        assert not any(k.endswith("_reason") for k in e)
    for n in by_source["corpus"]:
        assert "failures" not in key[n] and key[n]["passed"] is True
    for n in by_source["staffml"]:
        assert "passed" not in key[n] and "failures" not in key[n]

    # nothing in items.md tells a rejected item apart
    for marker in [
        *REJECTED_FAILURES,
        *(f for fs in REJECTED_FAILURES.values() for f in fs),
        "rsig",
        "reasonzz",
        "bandwidthzz",
        "rejected",
        "Rejected",
        "failure",
        "passed",
        "_ok",
        "gate",
        "imodelzz",
        "offlinezz",
    ]:
        assert marker not in items, marker
    # rejected and corpus rows built from one template render to the very same block
    # (up to numbers and the topic/track cell)
    blocks = _blocks(items)

    def shape(block: str) -> str:
        return re.sub(r"\d+", "N", re.sub(r"^- (Topic|Track): .*\n", "", block, flags=re.M)).strip()

    assert {shape(blocks[n]) for n in by_source["rejected"]} == {shape(blocks[n]) for n in by_source["corpus"]}
    assert len({shape(blocks[n]) for n in by_source["corpus"]}) == 1
    readme = (out / "README.md").read_text()
    assert "3 rejected by the gate" in readme and "validated_questions" in readme


def test_sample_rejected_is_seeded_and_optional(inputs, inputs_with_rejected, tmp_path):
    warehouse, cal = inputs_with_rejected
    a = sample.sample(8, n=5, calibration=2, warehouse=warehouse, out=tmp_path / "a", calibration_file=cal, rejected=2)
    b = sample.sample(8, n=5, calibration=2, warehouse=warehouse, out=tmp_path / "b", calibration_file=cal, rejected=2)
    assert (a / "items.md").read_text() == (b / "items.md").read_text()
    assert (a / "key.json").read_text() == (b / "key.json").read_text()
    # --rejected 0 (the default) draws exactly what a warehouse without validated_questions gives
    c = sample.sample(8, n=5, calibration=2, warehouse=warehouse, out=tmp_path / "c", calibration_file=cal)
    d_wh = write_hive(tmp_path / "plain", corpus_rows())
    d = sample.sample(8, n=5, calibration=2, warehouse=d_wh, out=tmp_path / "d", calibration_file=cal)
    assert (c / "items.md").read_text() == (d / "items.md").read_text()
    assert (c / "key.json").read_text() == (d / "key.json").read_text()
    assert "rejected" not in {e["source"] for e in json.loads((c / "key.json").read_text()).values()}


def test_sample_rejected_errors_clearly(inputs, tmp_path, capsys):
    warehouse, cal = inputs
    # no validated_questions at all
    with pytest.raises(sample.SampleError, match="no validated questions"):
        sample.sample(1, n=3, calibration=0, warehouse=warehouse, out=tmp_path / "x", calibration_file=cal, rejected=1)
    write_validated(warehouse, corpus_rows(), rejected_rows())
    # 5 rejected rows, 4 with distinct signatures
    with pytest.raises(
        sample.SampleError,
        match=r"--rejected 5, but .* holds only 5 rejected row\(s\) \(passed false\): 4 with distinct signatures",
    ):
        sample.sample(1, n=3, calibration=0, warehouse=warehouse, out=tmp_path / "y", calibration_file=cal, rejected=5)
    with pytest.raises(sample.SampleError, match="holds only 5 rejected"):
        sample.sample(1, n=3, calibration=0, warehouse=warehouse, out=tmp_path / "z", calibration_file=cal, rejected=50)
    out = sample.sample(
        1, n=3, calibration=0, warehouse=warehouse, out=tmp_path / "w", calibration_file=cal, rejected=4
    )
    assert sum(e["source"] == "rejected" for e in json.loads((out / "key.json").read_text()).values()) == 4
    # the CLI option
    assert (
        sample.main(
            [
                "--seed",
                "6",
                "--n",
                "2",
                "--calibration",
                "1",
                "--rejected",
                "2",
                "--warehouse",
                str(warehouse),
                "--calibration-file",
                str(cal),
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    assert "2 rejected" in capsys.readouterr().out
    assert (
        sample.main(
            [
                "--seed",
                "6",
                "--n",
                "2",
                "--calibration",
                "0",
                "--rejected",
                "9",
                "--warehouse",
                str(warehouse),
                "--out",
                str(tmp_path / "cli2"),
            ]
        )
        == 2
    )
    assert "holds only 5 rejected row(s)" in capsys.readouterr().err


def test_draw_rejected_skips_twins_of_drawn_corpus_items():
    rejected = rejected_rows()
    drawn = corpus_rows().head(2).assign(signature=["rsig002", "sig-x"])
    picked = sample.draw_rejected(rejected, 3, seed=1, drawn=drawn)
    assert "rej002z" not in set(picked["id"]) and len(picked) == 3
    with pytest.raises(sample.SampleError, match="4 with distinct signatures, 3 not sharing an id or signature"):
        sample.draw_rejected(rejected, 4, seed=1, drawn=drawn)
    assert sample.draw_rejected(rejected, 0, seed=1).empty


def test_both_sources_render_the_conclusion_alike():
    ours = sample.normalise_text(OUR_NAPKIN, "napkin_math")
    published = sample.normalise_text(PUBLISHED_NAPKIN, "napkin_math")
    assert ours.endswith("**Conclusion:**\nDecode is memory bound at 41.8 ms per token.")
    assert published.endswith("**Conclusion:**\n55 ms. The frame misses its deadline.")
    assert "- Contention: 30 ms + 25 ms = 55 ms" in published
    assert (
        "- weights: 140 GB\n" in ours
        and "- HBM bandwidth: 3.35 TB/s\n" in ours
        and "- requests: 12 per second\n" in ours
    )
    # the numbered, nested variant some published rows use renders the same way
    nested = (
        "1. **Assumptions & Constraints:**\n   - Frame budget: 33.3 ms\n2. **Calculations:**\n"
        "   - Contention: 30 ms + 25 ms = 55 ms\n3. **Conclusion & Interpretation:**\n"
        "   **Result: 55 ms.** The frame misses its deadline."
    )
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
        "1": {
            "source": "corpus",
            "id": "q1",
            "grounding_ok": True,
            "computability_ok": True,
            "hygiene_ok": True,
            "passed": True,
        },
        "2": {
            "source": "corpus",
            "id": "q2",
            "grounding_ok": True,
            "computability_ok": False,
            "hygiene_ok": True,
            "passed": True,
        },
        "3": {"source": "staffml", "id": "s1"},
        "4": {
            "source": "corpus",
            "id": "q3",
            "grounding_ok": False,
            "computability_ok": True,
            "hygiene_ok": True,
            "passed": True,
        },
        "5": {"source": "staffml", "id": "s2"},
    }
    d = tmp_path / "review"
    d.mkdir(exist_ok=True)
    (d / "key.json").write_text(json.dumps(key))
    (d / "scores.json").write_text(json.dumps(scores))
    return d


def test_score_shares_and_gate_agreement(tmp_path, capsys):
    d = review_dir(
        tmp_path,
        [
            scored(1, smell=2, grounding="A100 bandwidth is not 3.35 TB/s", staff_worthy="one formula"),
            scored(2, smell=1, math_correct="141/3.35 is 42 ms, not 4.2 ms"),
            scored(3, smell=0, topic_fit="generic ridge point", staff_worthy="too easy"),
            scored(4, smell=1),
            scored(5, smell=1, staff_worthy="incoherent setup"),
        ],
    )
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
    assert (
        agree["staff_worthy"]["agreement"] == pytest.approx(2 / 3, abs=1e-4)
        and agree["staff_worthy"]["gate"] == "passed"
    )
    # columns without a counterpart (hygiene_ok) or absent from the key (topic_fit_ok ...) give no agreement
    assert set(agree) == {"grounding", "math_correct", "staff_worthy"}
    assert "topic_fit_ok" in summary["gate_columns_missing"]

    # reasons for 0s on corpus items only
    assert summary["corpus_reasons"]["grounding"] == [
        {"item": 1, "id": "q1", "reason": "A100 bandwidth is not 3.35 TB/s"}
    ]
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


def test_score_gate_agreement_over_corpus_and_rejected_items(tmp_path):
    key = {
        "1": {"source": "corpus", "id": "q1", "grounding_ok": True, "passed": True},
        "2": {
            "source": "rejected",
            "id": "r1",
            "grounding_ok": False,
            "passed": False,
            "failures": ["grounding: bandwidth is not in the part's spec"],
        },
        "3": {"source": "staffml", "id": "s1"},
        "4": {"source": "corpus", "id": "q2", "grounding_ok": True, "passed": True},
        "5": {
            "source": "rejected",
            "id": "r2",
            "grounding_ok": True,
            "passed": False,
            "failures": ["structure: one formula at L6"],
        },
        "6": {
            "source": "rejected",
            "id": "r3",
            "grounding_ok": False,
            "passed": False,
            "failures": ["grounding: 45 nm energies"],
        },
        "7": {"source": "corpus", "id": "q3", "grounding_ok": True, "passed": True},
    }
    scores = [
        scored(1),  # gate pass, reviewer 1 (both)
        scored(2, grounding="link rate used as HBM bandwidth", staff_worthy="wrong figures"),  # fail/0 on both
        scored(3, staff_worthy="too easy"),  # calibration: not gated
        scored(4, staff_worthy="one formula at L6"),  # passed, staff_worthy 0
        scored(5, smell=2),  # rejected, reviewer passes all
        scored(6, math_correct="recomputes to 12 ms"),  # grounding fail but reviewer 1; staff_worthy 1
        scored(7, grounding="A100 is not 3.35 TB/s"),  # grounding pass, reviewer 0
    ]
    d = tmp_path / "review"
    d.mkdir()
    (d / "key.json").write_text(json.dumps(key))
    (d / "scores.json").write_text(json.dumps(scores))
    summary = score.score(d)

    ps = summary["per_source"]
    assert list(ps) == ["corpus", "staffml", "rejected"]
    assert ps["rejected"]["items"] == 3 and ps["corpus"]["items"] == 3 and ps["staffml"]["items"] == 1
    assert ps["rejected"]["pass_share"]["grounding"] == pytest.approx(2 / 3)
    assert ps["rejected"]["pass_share"]["staff_worthy"] == pytest.approx(2 / 3)

    agree = summary["gate_agreement"]
    assert set(agree) == {"grounding", "staff_worthy"}
    # grounding over 6 gated items: gate T,F,T,T,F,T (items 1,2,4,5,6,7) vs reviewer 1,0,1,1,1,0
    g = agree["grounding"]
    assert g["items"] == 6 and g["items_by_source"] == {"corpus": 3, "rejected": 3}
    assert g["counts"] == {
        "gate_pass": {"reviewer_1": 3, "reviewer_0": 1},
        "gate_fail": {"reviewer_1": 1, "reviewer_0": 1},
    }
    assert g["agreement"] == pytest.approx(4 / 6)
    assert g["gate_pass_reviewer_fail"] == [7] and g["gate_fail_reviewer_pass"] == [6]
    assert [(x["item"], x["source"]) for x in g["disagreements"]] == [(6, "rejected"), (7, "corpus")]
    # passed -> staff_worthy: gate T,F,T,F,F,T (items 1,2,4,5,6,7) vs reviewer 1,0,0,1,1,1
    sw = agree["staff_worthy"]
    assert sw["counts"] == {
        "gate_pass": {"reviewer_1": 2, "reviewer_0": 1},
        "gate_fail": {"reviewer_1": 2, "reviewer_0": 1},
    }
    assert sw["agreement"] == pytest.approx(3 / 6)
    assert sw["gate_pass_reviewer_fail"] == [4] and sw["gate_fail_reviewer_pass"] == [5, 6]
    assert sw["both_pass"] == 2 and sw["both_fail"] == 1

    # reasons, per source; the calibration item's stay out
    assert summary["corpus_reasons"]["grounding"] == [{"item": 7, "id": "q3", "reason": "A100 is not 3.35 TB/s"}]
    assert summary["rejected_reasons"]["grounding"] == [
        {"item": 2, "id": "r1", "reason": "link rate used as HBM bandwidth"}
    ]
    assert summary["rejected_items"][0] == {
        "item": 2,
        "id": "r1",
        "gate_failures": ["grounding: bandwidth is not in the part's spec"],
        "reviewer_zeros": ["grounding", "staff_worthy"],
    }

    md = (d / "summary.md").read_text()
    assert "| criterion | corpus | staffml | corpus - staffml | rejected |" in md
    assert "| grounding | `grounding_ok` | 67% (6 items) | 3 | 1 (#7 corpus) | 1 (#6 rejected) | 1 |" in md
    assert "| staff_worthy | `passed` | 50% (6 items) | 2 | 1 (#4 corpus) | 2 (#5 rejected, #6 rejected) | 1 |" in md
    assert "Reviewer's reasons on corpus and rejected items" in md
    assert "- item 2 (rejected, `r1`): link rate used as HBM bandwidth" in md
    assert "- item 7 (corpus, `q3`): A100 is not 3.35 TB/s" in md
    assert "  - gate: structure: one formula at L6" in md
    assert "too easy" not in md
    assert json.loads((d / "summary.json").read_text()) == summary


def test_score_without_rejected_items_says_what_agreement_cannot_show(tmp_path):
    d = review_dir(tmp_path, [scored(i) for i in range(1, 6)])
    summary = score.score(d)
    assert "rejected" not in summary["per_source"] and summary["rejected_items"] == []
    md = (d / "summary.md").read_text()
    assert "| criterion | corpus | staffml | corpus - staffml |\n" in md
    assert "--rejected K" in md and "Reviewer's reasons on corpus items" in md


def test_scored_calibration_items_are_redacted_from_the_committed_items(tmp_path):
    """Published questions are CC BY 4.0 reference material: after scoring, items.md keeps a pointer, not their text."""
    d = review_dir(tmp_path, [scored(i) for i in range(1, 6)])
    key = json.loads((d / "key.json").read_text())
    blocks = "".join(f"## Item {i}\n\n- Topic: x\n\n### Scenario\n\nsecret text {i}\n\n" for i in range(1, 6))
    (d / "items.md").write_text(blocks)
    n = score.redact_calibration(d)
    text = (d / "items.md").read_text()
    published = [k for k, v in key.items() if v["source"] == "staffml"]
    assert n == len(published) >= 1
    for k in published:
        assert f"secret text {k}\n" not in text and key[k]["id"] in text
    assert all(f"secret text {k}\n" in text for k, v in key.items() if v["source"] != "staffml")
    assert score.redact_calibration(d) == 0  # idempotent


def test_exponents_in_code_survive_the_markup_stripping():
    """`side ** 2` in a calculation is an exponent; stripping bold markup must not eat it."""
    assert (
        sample._inline("- MACs: `m = side ** 2 * c` = 9.4e8 and **bold**")
        == "- MACs: m = side ** 2 * c = 9.4e8 and bold"
    )
