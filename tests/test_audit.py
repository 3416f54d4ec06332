"""`staffml audit`: free-text napkin math recomputed, figures matched to their part, text
defects, the CLI's outputs and exit codes. The questions here are invented (our own text)."""

from __future__ import annotations

import json

import pytest
import yaml

from staffml_dagster.cli import main
from staffml_dagster.interchange.audit import audit_rows
from staffml_dagster.quality.arithmetic import check_arithmetic, check_equations, check_percentages_in_words
from staffml_dagster.quality.criteria import (
    _truncated,
    figure_attributions,
    grounding,
    hygiene,
    is_family_name,
    placeholder_residue,
)
from tests.conftest import REFERENCE

SAMPLE = REFERENCE / "staffml_questions_sample.jsonl"


def one(text: str):
    statements = check_arithmetic(text).statements
    assert len(statements) == 1, [s.text for s in statements]
    return statements[0]


# --------------------------------------------------------------------------- statement shapes


@pytest.mark.parametrize(
    "text",
    [
        "312e12 / 2e12 = 156",
        "Decode step: 7.642 GB / 204.8 GB/s = 37.31 ms.",
        "2 x 4 x sqrt(0.75) = 6.93",
        "Ring time: 2(8-1)/8 * 14GB / 900GB/s = ~27ms.",
        "- Flash usage: 150 KB weights / 512 KB Flash = 29% utilized.",
        "Canary: 10% of 4,000 QPS = 400 QPS",
        "Memory-limit instances = 32000 MB / 382.5 MB = 83 instances",  # a count may be the floor
        "Peak buffer: 24*5*64 = 7.5KB",  # KB written for KiB
        "Energy: 12 tokens/sec * (1 - 0.60) = ~4.8 tokens/sec",
        "Weights: 43.7M * 4 Bytes = 174.8 MB",
        "Budget: 1.8 Wh / 43,800 h = 41 μW",
        "Cost: 384 GPU-hours * $2 = $768",  # $/hour left implicit: compared as written
        "Drain: 12.8 Wh * 0.60 = 7.68 W",  # a rate written as a capacity: compared as written
        "Clip: min(max(192, -128), 127) = 127",
        "Gap = 0x20010000 - 0x20000000 = 65,536 bytes",
        "Slack: 512 KB - 544 KB = -32 KB",
        "The plant air may reach 105 °C - 18.1 K - 13.9 K = 72.9 °C",  # a Celsius reading less rises in K
    ],
)
def test_each_statement_shape_parses_and_holds(text):
    statement = one(text)
    assert statement.ok, statement.describe()


def test_a_chain_checks_every_step():
    text = "Compute-limited: 90,000,000 / (8 * 250) = 90,000,000 / 2,000 = 45,000 seconds ≈ 12.5 hours."
    statements = check_equations(text)
    assert len(statements) == 3 and all(s.ok for s in statements)
    wrong_middle = text.replace("45,000 seconds", "4,500 seconds")
    verdicts = [s.ok for s in check_equations(wrong_middle)]
    assert verdicts == [True, False, False]  # the wrong step and the conversion after it


@pytest.mark.parametrize(
    "text, fix",
    [
        ("312e12 / 2e12 = 1560", "156"),
        ("Decode step: 7.642 GB / 204.8 GB/s => ~300ms", "37.3 ms"),
        ("Ring time: 2(8-1)/8 * 14GB / 900GB/s = 272ms.", "27.2 ms"),
        ("- SRAM usage: 100 KB / 128 KB = 7.8% utilized", "78.1%"),
        ("Energy: 5W * 0.08s = 4.0 Joules", "0.4 J"),
        ("The plant air may reach 105 °C - 18.1 K - 13.9 K = 80.9 °C", "73"),
    ],
)
def test_a_wrong_result_is_flagged_with_the_recomputed_value(text, fix):
    statement = one(text)
    assert not statement.ok
    assert statement.suggestion == fix


def test_tolerance_follows_the_stated_digits_and_loosens_for_approximate_results():
    base = "Ring time: 2(8-1)/8 * 14GB / 900GB/s = {} ms"  # 27.22 ms
    assert one(base.format("27")).ok  # two digits: 26.5-27.5
    assert not one(base.format("27.0")).ok  # three digits: 26.95-27.05
    assert one(base.format("30")).ok  # a trailing zero is not significant: 25-35
    assert not one(base.format("31")).ok
    assert one(base.format("~29")).ok  # "~" allows 10%
    assert not one(base.format("~31")).ok


def test_percentages_stated_in_words():
    wrong = check_percentages_in_words("The sensor hub draws 1.825 of 3.42 mW, which leaves 87% margin for the radio.")
    assert len(wrong) == 1 and not wrong[0].ok and wrong[0].suggestion == "46.6%"
    right = check_percentages_in_words("The sensor hub draws 1.825 of 3.42 mW, which leaves 47% margin for the radio.")
    assert right[0].ok
    assert not check_percentages_in_words("The weights: 24 GB is 25% of 80 GB.")[0].ok
    assert check_percentages_in_words("The weights: 24 GB is 30% of 80 GB.")[0].ok
    assert check_percentages_in_words("The weights take 24 GB of 80 GB (30%).")[0].ok


def test_what_cannot_be_parsed_is_unverifiable_not_wrong():
    for text in (
        "Total MLP weights: W1 + W2 = 536.8M parameters.",
        "B=1: M = 1.2 GB. B=8: M = 6.8 GB.",
        "Per-token time = 140 GB / TP / 3.35 TB/s.",
        "compute 40ms + sync 15ms = 55ms/step",
        "Sharded over 256 GPUs = 4 GB of weights per GPU",
        "The cache hit costs ~1-4 cycles.",
        "",
    ):
        check = check_arithmetic(text)
        assert not check.wrong, [s.describe() for s in check.wrong]
    rows = [
        {
            "id": "cloud-9999",
            "track": "cloud",
            "scenario": "A cluster idles.",
            "question": "Why?",
            "realistic_solution": "Because the scheduler waits.",
            "napkin_math": "No numbers to check here.",
            "common_mistake": (
                "**The Pitfall:** Blaming the network for a scheduling stall that the queue explains entirely."
            ),
        }
    ]
    result = audit_rows(rows, _specs())
    assert result.arithmetic_unverifiable == ["cloud-9999"] and not result.findings


@pytest.mark.parametrize(
    "text",
    [
        "1e999999 / 1 = 5",
        "5 / 0 = 3",
        "(" * 500 + "1" + ")" * 500 + " = 1",
        "= = = = 1 = =",
        "sqrt(-1) = 2",
        "1" * 5000 + " * 2 = 3",
        "2 ^ 99999 = 4",
        "0x" + "f" * 400 + " = 1",
        "ms / GB = s",
        "\x00 1 + 1 = 2 \ufffd",
    ],
)
def test_hostile_statements_do_not_crash(text):
    check = check_arithmetic(text * 3)
    assert all(isinstance(s.ok, bool) for s in check.statements)


def test_a_long_text_is_read_in_bounded_time():
    import time

    started = time.perf_counter()
    check_arithmetic("2 * 3 = 6; " * 20_000)
    assert time.perf_counter() - started < 30  # bounded, not a speed goal: MAX_TEXT caps what is read


@pytest.mark.parametrize(
    "text", ["H100 80 GB " * 3000, "H100 (" * 3000 + "80 GB" + ")" * 3000, "NVLink " * 5000 + "80 GB", "9" * 100_000]
)
def test_hostile_texts_audit_without_blowing_up(specs, text):
    row = {
        "id": "cloud-9001",
        "track": "cloud",
        "scenario": text,
        "question": text,
        "realistic_solution": text,
        "napkin_math": text,
        "common_mistake": "",
    }
    result = audit_rows([row], specs)
    assert {f.criterion for f in result.findings} >= {"common_mistake"}
    assert len(result.findings) < 20  # one finding per distinct problem, not one per repetition


# --------------------------------------------------------------------------- figures and platforms


def _specs():
    from staffml_dagster.specs import cached_specs

    return cached_specs()


@pytest.fixture
def figures(specs):
    return lambda text: [(a.text, a.name, a.other_part) for a in figure_attributions(text, specs)]


def test_figures_go_to_the_name_they_are_written_beside(specs, figures):
    text = "Compare Jetson Orin (275 TOPS, 60W) with a Hailo-8 (26 TOPS) for the camera."
    assert figures(text) == [
        ("275 TOPS", "Jetson Orin", False),
        ("60W", "Jetson Orin", False),
        ("26 TOPS", "Hailo-8", False),
    ]
    assert grounding({"track": "edge", "scenario": text}, specs).passed


def test_precision_labels_are_not_quantities_and_links_are_not_memories(specs, figures):
    assert figures("The H100 peaks at FP16 TFLOPS rates.") == []
    assert figures("The H100 reaches 989 FP16 TFLOPS.") == [("989 FP16 TFLOPS", "H100", False)]
    text = "Each H100 talks over NVLink (900 GB/s) and reads HBM at 3.35 TB/s; an H100 with 900 GB/s NVLink."
    assert grounding({"track": "cloud", "scenario": text}, specs).passed
    assert [f for f in figures(text) if f[0] == "900 GB/s"] == [
        ("900 GB/s", "NVLink", True),
        ("900 GB/s", "NVLink", True),
    ]


def test_platform_variants_are_recognised(specs):
    assert (
        is_family_name("Jetson Orin", specs)
        and is_family_name("Cortex-M4", specs)
        and not is_family_name("H100", specs)
    )
    for text, track in (
        ("a Cortex-M4 board", "tinyml"),
        ("a Cortex-M4F board", "tinyml"),
        ("eight A100s", "cloud"),
        ("the Jetson Orin module", "edge"),
        ("an iPhone 15 Pro", "mobile"),
        ("an STM32F407", "tinyml"),
    ):
        assert (
            "another track"
            in hygiene({"track": "mobile" if track != "mobile" else "cloud", "scenario": text}, specs).reason
        ), text
    assert (
        "another track" not in hygiene({"track": "", "scenario": "eight A100s"}, specs).reason
    )  # no track: nothing to stray from


def test_wrong_and_family_figures(specs):
    bad = grounding({"track": "cloud", "scenario": "We train on 64 Cortex-M4 (80GB) GPUs."}, specs)
    assert not bad.passed and "Cortex-M4" in bad.reason
    assert not grounding({"track": "tinyml", "scenario": "An ESP32-S3 (312 MHz Xtensa) runs it."}, specs).passed
    assert grounding({"track": "tinyml", "scenario": "An ESP32-S3 (240 MHz Xtensa) runs it."}, specs).passed
    assert grounding(
        {"track": "tinyml", "scenario": "A Cortex-M4 with 256KB SRAM and 512KB Flash."}, specs
    ).passed  # some M4 part
    assert grounding(
        {"track": "edge", "scenario": "Plus the CUDA context (~3 GB on Orin)."}, specs
    ).passed  # a use, not a spec


# --------------------------------------------------------------------------- text defects


def test_truncation_placeholders_and_template_residue(specs):
    assert _truncated("The allocator reports 30%") and _truncated("It takes 3") and not _truncated("It uses 30%.")
    assert _truncated("The run fails with Out-Of-Memory (OOM)") and _truncated("Memory = Batch * SeqLen *")
    assert (
        not _truncated('It is a "cache miss storm."')
        and not _truncated("**Result: fits.**")
        and not _truncated("(See above.)")
    )
    assert placeholder_residue("Use [INSERT model name] here.") == ["[INSERT model name]"]
    assert placeholder_residue("Batch {batch_size} at TODO") == ["TODO", "{batch_size}"]
    assert "{{ platform }}" in placeholder_residue("Runs on {{ platform }}.")
    assert placeholder_residue("An L5 engineer will start from the roofline.")
    assert placeholder_residue("The arena is 64 KB; no residue here.") == []
    assert "template" in hygiene({"title": "Tinyml New 0001"}, specs).reason
    assert "template" not in hygiene({"title": "SRAM limits on Corstone-300"}, specs).reason


# --------------------------------------------------------------------------- the CLI on a tiny corpus


def _question(qid: str, track: str = "cloud", **fields) -> dict:
    base = {
        "schema_version": "1.0",
        "id": qid,
        "track": track,
        "level": "L3",
        "zone": "diagnosis",
        "topic": "vram-budgeting",
        "competency_area": "memory",
        "bloom_level": "apply",
        "title": "The Leftover Headroom Puzzle",
        "scenario": "A toy inference box has one accelerator with 40 GB of memory and loads 12 GB of weights.",
        "question": "How many gigabytes remain for activations and cache?",
        "details": {
            "realistic_solution": "Subtract the weights from the device memory: 40 GB minus 12 GB leaves 28 GB.",
            "common_mistake": (
                "**The Pitfall:** Adding the weights to the memory instead of subtracting them, "
                "which gives 52 GB of demand."
            ),
            "napkin_math": "**Calculations:**\n- Headroom: 40 GB - 12 GB = 28 GB.\n",
        },
    }
    details = fields.pop("details", {})
    base.update(fields)
    base["details"] = {**base["details"], **details}
    return base


def _write(root, record):
    path = root / "questions" / record["track"] / "memory" / f"{record['id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    return path


def _run(capsys, *args):
    code = main(["audit", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_clean_corpus_exits_0_with_an_empty_report(tmp_path, capsys):
    _write(tmp_path, _question("cloud-9101"))
    code, out, _ = _run(capsys, tmp_path / "questions", "--out", tmp_path / "report")
    assert code == 0, out
    assert (tmp_path / "report" / "report.jsonl").read_text() == ""
    assert "audited 1 question(s)" in out and "1 statement(s) recomputed" in out
    assert "nothing found" in (tmp_path / "report" / "report.html").read_text()


def test_findings_exit_1_with_one_line_each_and_a_self_contained_page(tmp_path, capsys):
    root = tmp_path / "corpus"
    _write(root, _question("cloud-9101"))
    _write(
        root,
        _question("cloud-9102", details={"napkin_math": "**Calculations:**\n- Headroom: 40 GB - 12 GB = 2.8 GB.\n"}),
    )
    _write(root, _question("cloud-9103", scenario="The job runs on a Cortex-M4 and the allocator reports 30%"))
    _write(
        root,
        _question(
            "cloud-9104",
            scenario="A box with [INSERT accelerator] loads weights <script>alert(1)</script>",
            details={"common_mistake": ""},
        ),
    )
    (root / "questions" / "cloud" / "memory" / "cloud-9105.yaml").write_text("id: [unclosed\n")
    code, out, err = _run(capsys, root / "questions", "--out", tmp_path / "report")
    assert code == 1
    lines = [json.loads(line) for line in (tmp_path / "report" / "report.jsonl").read_text().splitlines()]
    by = {(f["question_id"], f["criterion"]) for f in lines}
    assert {
        ("cloud-9102", "arithmetic"),
        ("cloud-9103", "off_track"),
        ("cloud-9103", "truncated"),
        ("cloud-9104", "placeholder"),
        ("cloud-9104", "common_mistake"),
        ("", "unreadable"),
    } <= by
    assert not any(f["question_id"] == "cloud-9101" for f in lines)
    arithmetic = next(f for f in lines if f["criterion"] == "arithmetic")
    assert arithmetic["suggested_fix"] == "28 GB" and "40 GB - 12 GB = 2.8 GB" in arithmetic["evidence"]
    assert set(arithmetic) == {"question_id", "criterion", "field", "evidence", "suggested_fix", "source_path"}
    assert "cloud-9105.yaml" in err
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<script" not in page and "&lt;/script&gt;" in page  # the corpus's text is escaped
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "arithmetic" in out and "finding(s)" in out


def test_the_report_is_reproducible_and_bundles_work(tmp_path, capsys):
    records = [_question("cloud-9101"), _question("cloud-9102", details={"napkin_math": "- 40 GB - 12 GB = 2.8 GB."})]
    bundle = tmp_path / "bundle.jsonl"
    bundle.write_text("".join(json.dumps(r) + "\n" for r in records))
    outputs = []
    for n in range(2):
        code, _, _ = _run(capsys, bundle, "--out", tmp_path / f"r{n}")
        assert code == 1
        outputs.append([(tmp_path / f"r{n}" / name).read_bytes() for name in ("report.jsonl", "report.html")])
    assert outputs[0] == outputs[1]


def test_a_repeated_question_is_a_duplicate_of_the_first(specs):
    first = {
        "id": "cloud-9201",
        "track": "cloud",
        "scenario": "A box idles.",
        "question": "Why?",
        "realistic_solution": "It waits.",
        "common_mistake": (
            "**The Pitfall:** Blaming the network for a scheduling stall that the queue explains entirely."
        ),
    }
    again = {**first, "id": "cloud-9202", "scenario": "A  box IDLES."}  # case and spacing aside
    other = {**first, "id": "cloud-9203", "scenario": "A box is busy."}
    found = [(f.question_id, f.criterion, f.suggested_fix) for f in audit_rows([first, again, other], specs).findings]
    assert found == [("cloud-9202", "duplicate", "drop it or merge with cloud-9201")]


def test_bad_input_exits_2_naming_the_path(tmp_path, capsys):
    code, _, err = _run(capsys, tmp_path / "missing")
    assert code == 2 and "missing" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, tmp_path / "empty")
    assert code == 2 and "nothing to audit" in err
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{not json\n")
    code, _, err = _run(capsys, junk)
    assert code == 2 and "junk.jsonl:1" in err


# --------------------------------------------------------------------------- the published sample


@pytest.mark.skipif(not SAMPLE.exists(), reason="../shared/reference/staffml_questions_sample.jsonl is not present")
def test_the_published_sample_audits_with_only_its_known_defects(specs):
    from staffml_dagster.interchange.audit import audit_path

    result = audit_path(SAMPLE, specs)
    assert result.questions == 40 and result.statements_checked >= 100
    assert not [f for f in result.findings if f.criterion in ("arithmetic", "truncated", "off_track", "common_mistake")]
    assert {("cloud-0698", "placeholder"), ("tinyml-0779", "placeholder"), ("tinyml-1027", "placeholder")} <= {
        (f.question_id, f.criterion) for f in result.findings
    }
