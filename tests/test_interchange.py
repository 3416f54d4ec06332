"""StaffML corpora in and out: the importer (schema 1.0 tree, legacy layout, bundles, hostile
input), the exporter (atomic, lossless round trip) and the imported_questions asset.

Every question text here is invented for the tests; only ids, field names and vocabulary
follow the public StaffML format."""

import json
import math
import os
import re
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from staffml_dagster.cli import main
from staffml_dagster.embedding import get_embedder
from staffml_dagster.generation.backend import QUESTION_COLUMNS, CellRequest
from staffml_dagster.generation.offline import ItemModelGenerator
from staffml_dagster.interchange import ImportLimits, export_corpus, exporter, import_corpus, importer, review_imported
from staffml_dagster.interchange.importer import path_hints
from staffml_dagster.interchange.staffml_format import LEVEL_PATTERN, file_stem, plain, row_to_record, valid_id
from staffml_dagster.storage import write_parquet_atomic
from staffml_dagster.storage.parquet_io import partition_dir
from tests.conftest import REFERENCE

SAMPLE = REFERENCE / "staffml_questions_sample.jsonl"


def question(qid: str, **fields) -> dict:
    """An invented schema-1.0 question (their field names, our own text)."""
    base = {
        "schema_version": "1.0",
        "id": qid,
        "track": "cloud",
        "level": "L3",
        "zone": "diagnosis",
        "topic": "vram-budgeting",
        "competency_area": "memory",
        "bloom_level": "apply",
        "phase": "inference",
        "title": "The Leftover Headroom Puzzle",
        "scenario": "A toy inference box has one accelerator with 40 GB of memory and loads 12 GB of weights.",
        "question": "How many gigabytes remain for activations and cache?",
        "details": {
            "realistic_solution": "Subtract the weights from the device memory: 40 GB minus 12 GB leaves 28 GB.",
            "common_mistake": (
                "**The Pitfall:** Adding the weights to the memory instead of subtracting them, which gives 52 GB."
            ),
            "napkin_math": "**Calculations:**\n- 40 GB - 12 GB = 28 GB.\n",
        },
        "status": "published",
        "provenance": "human",
    }
    details = fields.pop("details", None)
    base.update(fields)
    if details is not None:
        base["details"] = {**base["details"], **details}
    return base


def write_yaml(path: Path, record: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    return path


def errors_by_file(result) -> dict[str, str]:
    return {e.where: e.message for e in result.errors}


# --------------------------------------------------------------------------- import: layouts and formats


def test_schema_1_0_tree_maps_fields_and_keeps_unknown_ones(tmp_path, specs):
    root = tmp_path / "questions"
    write_yaml(
        root / "cloud" / "memory" / "cloud-9001.yaml",
        question(
            "cloud-9001",
            zone="implement",
            level="L2",
            details={"options": ["28 GB", "52 GB", "12 GB"], "correct_index": 0},
            chains=[{"id": "cloud-chain-900", "position": 2}],
            review={"by": ["a", "b"], "scores": {"clarity": 4.5}},
        ),
    )
    record = question(
        "mobile-9002", track="mobile", zone="evaluation", level="L5", topic="power-budgeting", competency_area=None
    )
    del record["competency_area"]
    write_yaml(root / "mobile" / "power" / "mobile-9002.yaml", record)

    result = import_corpus(root, specs)
    assert result.errors == [] and len(result.rows) == 2
    rows = {r["id"]: r for r in result.rows}
    one = rows["cloud-9001"]
    assert (one["track"], one["level"], one["zone"], one["topic"], one["competency_area"]) == (
        "cloud",
        "L2",
        "quantify",
        "vram-budgeting",
        "memory",
    )
    assert one["question"].startswith("How many gigabytes") and one["realistic_solution"].endswith("28 GB.")
    assert one["napkin_math"] == "**Calculations:**\n- 40 GB - 12 GB = 28 GB.\n"
    assert one["source_format"] == "staffml-1.0" and one["source_path"] == "cloud/memory/cloud-9001.yaml"
    assert one["backend"] == "import" and one["unmapped"] == []
    extra = json.loads(one["extra"])
    assert extra["details"] == {"options": ["28 GB", "52 GB", "12 GB"], "correct_index": 0}
    assert extra["chains"] == [{"id": "cloud-chain-900", "position": 2}]
    assert extra["review"] == {"by": ["a", "b"], "scores": {"clarity": 4.5}}
    assert extra["bloom_level"] == "apply" and extra["status"] == "published" and extra["schema_version"] == "1.0"
    assert extra["source_values"] == {"zone": "implement"}  # the renamed value is kept
    assert rows["mobile-9002"]["competency_area"] == "power"  # derived from the topic when absent
    assert result.renamed[("zone", "implement", "quantify")] == 1


def test_legacy_layout_takes_track_level_zone_from_the_folders(tmp_path, specs):
    root = tmp_path / "vault" / "questions"
    legacy = {
        "schema_version": 1,
        "title": "Sleepy Sensor Budget",
        "topic": "duty-cycling",
        "status": "published",
        "provenance": "imported",
        "scenario": (
            "An invented soil probe wakes once a minute for 30 ms at 20 mW and sleeps at 5 uW. "
            "Estimate its average power."
        ),
        "details": {
            "realistic_solution": "Weight each state by its time share.",
            "common_mistake": "Ignoring sleep power.",
            "napkin_math": "0.0005 x 20 mW + 0.9995 x 5 uW = about 15 uW.",
        },
        "chain": {"id": "tinyml-chain-900", "position": 1},
        "last_modified": "2026-01-01",
        "tags": ["scope:Power"],
    }
    write_yaml(root / "tinyml" / "l6" / "implement" / "tinyml-9101.yaml", {**legacy, "id": "tinyml-9101"})
    write_yaml(root / "tinyml" / "l2" / "recall" / "tinyml-9102.yaml", {**legacy, "id": "tinyml-9102"})
    write_yaml(
        root / "edge" / "l3" / "diagnosis" / "edge-9103.yaml",
        {**legacy, "id": "edge-9103", "level": "L4", "topic": "thermal-management"},
    )

    result = import_corpus(root, specs)
    assert result.errors == []
    rows = {r["id"]: r for r in result.rows}
    assert [rows["tinyml-9101"][k] for k in ("track", "level", "zone", "competency_area")] == [
        "tinyml",
        "L6+",
        "quantify",
        "power",
    ]
    assert [rows["tinyml-9102"][k] for k in ("track", "level", "zone")] == ["tinyml", "L2", "recall"]
    assert rows["edge-9103"]["level"] == "L4"  # the file's own key wins over its folder
    assert rows["tinyml-9101"]["question"] is None and "Estimate its average power" in rows["tinyml-9101"]["scenario"]
    assert {r["source_format"] for r in result.rows} == {"staffml-legacy"}
    assert json.loads(rows["tinyml-9101"]["extra"])["chain"] == {"id": "tinyml-chain-900", "position": 1}
    assert path_hints(Path("q/cloud/l5/optimization/x.yaml")) == (
        {"track": "cloud", "level": "l5", "zone": "optimization"},
        "legacy",
    )
    assert path_hints(Path("q/edge/latency/x.yaml")) == ({"track": "edge", "competency_area": "latency"}, "tree")


def test_json_and_jsonl_bundles(tmp_path, specs):
    flat = question("edge-9201", track="edge", zone="fluency")
    flat.update(flat.pop("details"))  # the flattened form of the reference bundle
    (tmp_path / "list.json").write_text(json.dumps([flat, question("edge-9202", track="edge")]))
    (tmp_path / "wrapped.json").write_text(json.dumps({"version": 3, "questions": [question("cloud-9203")]}))
    (tmp_path / "not-a-bundle.json").write_text(json.dumps({"chains": []}))
    lines = [
        json.dumps(question("mobile-9204", track="mobile")),
        "",
        "{broken json",
        json.dumps(question("mobile-9205", track="mobile")),
    ]
    (tmp_path / "lines.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "notes.txt").write_text("not a question")

    result = import_corpus(tmp_path, specs)
    assert sorted(r["id"] for r in result.rows) == [
        "cloud-9203",
        "edge-9201",
        "edge-9202",
        "mobile-9204",
        "mobile-9205",
    ]
    errors = errors_by_file(result)
    assert set(errors) == {"lines.jsonl:3", "not-a-bundle.json"}
    assert errors["lines.jsonl:3"].startswith("malformed JSON at line 1, column 2")
    assert "list of questions" in errors["not-a-bundle.json"]
    rows = {r["id"]: r for r in result.rows}
    assert (
        rows["edge-9201"]["realistic_solution"].startswith("Subtract the weights")
        and rows["edge-9201"]["source_path"] == "list.json[0]"
    )
    assert rows["mobile-9205"]["source_path"] == "lines.jsonl:4"
    assert dict(result.formats) == {"json-bundle": 3, "jsonl-bundle": 2}
    assert result.files_ignored == 1
    one_file = import_corpus(tmp_path / "lines.jsonl", specs)
    assert len(one_file.rows) == 2 and len(one_file.errors) == 1


def test_unmapped_values_are_reported_and_kept(tmp_path, specs):
    write_yaml(
        tmp_path / "global" / "data" / "global-9301.yaml",
        question("global-9301", track="global", competency_area="data", topic="data-pipeline-engineering"),
    )
    write_yaml(
        tmp_path / "global" / "data" / "global-9302.yaml",
        question("global-9302", track="global", topic="data-quality-validation", competency_area="data"),
    )
    write_yaml(
        tmp_path / "cloud" / "governance" / "cloud-9303.yaml",
        question("cloud-9303", topic="quantum-annealing", zone="wizardry", level="L9", competency_area="governance"),
    )

    result = import_corpus(tmp_path, specs)
    assert result.errors == [] and len(result.rows) == 3
    assert result.unmapped["track"] == {"global": 2}
    assert sorted(result.unmapped_files["track"]["global"]) == [
        "global/data/global-9301.yaml",
        "global/data/global-9302.yaml",
    ]
    for fld, value in [
        ("topic", "quantum-annealing"),
        ("zone", "wizardry"),
        ("level", "L9"),
        ("competency_area", "governance"),
    ]:
        assert result.unmapped[fld] == {value: 1}
        assert result.unmapped_files[fld][value] == ["cloud/governance/cloud-9303.yaml"]
    rows = {r["id"]: r for r in result.rows}
    assert rows["global-9301"]["track"] is None and rows["global-9301"]["unmapped"] == ["track=global"]
    assert rows["global-9301"]["topic"] == "data-pipeline-engineering"
    odd = rows["cloud-9303"]
    assert [odd[k] for k in ("topic", "zone", "level", "competency_area")] == [None, None, None, None]
    assert json.loads(odd["extra"])["source_values"] == {
        "zone": "wizardry",
        "level": "L9",
        "topic": "quantum-annealing",
        "competency_area": "governance",
    }
    summary = result.summary()
    assert "track: 'global' x2" in summary and "zone: 'wizardry' x1 (cloud/governance/cloud-9303.yaml)" in summary
    report = result.report()
    assert report["unmapped"]["track"]["global"]["count"] == 2


# --------------------------------------------------------------------------- import: hostile input


def test_hostile_inputs_give_one_clear_error_each_and_the_good_files_import(tmp_path, specs):
    root = tmp_path / "corpus"
    write_yaml(root / "cloud" / "memory" / "cloud-9401.yaml", question("cloud-9401"))
    write_yaml(root / "cloud" / "memory" / "cloud-9402.yaml", question("cloud-9402", track="cloud"))
    bad = root / "bad"
    bad.mkdir(parents=True)
    (bad / "oversize.yaml").write_text(yaml.safe_dump(question("cloud-9403", scenario="x" * 1_100_000)))
    (bad / "deep.yaml").write_text(yaml.safe_dump(question("cloud-9404", nested=[[[[[[[[[[[["bottom"]]]]]]]]]]]])))
    marker = tmp_path / "pwned"
    (bad / "python-tag.yaml").write_text(
        f"id: cloud-9405\nscenario: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    (bad / "traversal.yaml").write_text(yaml.safe_dump(question("../../etc/passwd")))
    (bad / "malformed.yaml").write_text("id: cloud-9407\nscenario: [an unclosed list\ntitle: x\n")
    (bad / "wrong-title.yaml").write_text(yaml.safe_dump(question("cloud-9408", title=["not", "text"])))
    (bad / "wrong-details.yaml").write_text(yaml.safe_dump(question("cloud-9409") | {"details": "just a sentence"}))
    (bad / "wrong-number.yaml").write_text(yaml.safe_dump(question("cloud-9410", answer_value="lots")))
    (bad / "bomb.yaml").write_text("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nid: cloud-9411\nscenario: s\n")
    (bad / "no-id.yaml").write_text(yaml.safe_dump({k: v for k, v in question("x").items() if k != "id"}))
    (bad / "duplicate.yaml").write_text(yaml.safe_dump(question("cloud-9401")))
    (bad / "list.yaml").write_text("- id: cloud-9412\n")
    (bad / "future.yaml").write_text(yaml.safe_dump(question("cloud-9413", schema_version="2.0")))
    outside = tmp_path / "secret.yaml"
    write_yaml(outside, question("cloud-9414"))
    os.symlink(outside, bad / "escape.yaml")
    os.symlink(tmp_path, bad / "escape-dir")
    os.symlink(
        root / "cloud" / "memory" / "cloud-9401.yaml", root / "inside-link.yaml"
    )  # stays inside: followed (read first)

    result = import_corpus(root, specs)
    assert not marker.exists()
    assert sorted(r["id"] for r in result.rows) == ["cloud-9401", "cloud-9402"]
    errors = errors_by_file(result)
    expected = {
        "bad/oversize.yaml": "above the limit of 1,048,576",
        "bad/deep.yaml": "nesting deeper than 10 levels",
        "bad/python-tag.yaml": "tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        "bad/traversal.yaml": "id '../../etc/passwd' is not a valid question id",
        "bad/malformed.yaml": "malformed YAML at line 3",
        "bad/wrong-title.yaml": "key 'title': expected text, got list",
        "bad/wrong-details.yaml": "key 'details': expected a mapping",
        "bad/wrong-number.yaml": "key 'answer_value': expected a number, got str",
        "bad/bomb.yaml": "aliases (*name) are not allowed",
        "bad/no-id.yaml": "missing required key 'id'",
        "bad/duplicate.yaml": "duplicate id 'cloud-9401', first read from inside-link.yaml",
        "bad/list.yaml": "expected a question (a mapping of keys), got list",
        "bad/future.yaml": "unsupported schema_version '2.0'",
        "bad/escape.yaml": "symlink to a file outside the import root",
        "bad/escape-dir": "symlink to a folder outside the import root",
        "cloud/memory/cloud-9401.yaml": "duplicate id 'cloud-9401', first read from inside-link.yaml",
    }
    assert set(errors) == set(expected), errors
    for where, fragment in expected.items():
        assert fragment in errors[where], (where, errors[where])
    assert len(result.errors) == len(expected)  # one error per bad file, nothing else


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_yaml_guards_hold_with_and_without_libyaml(libyaml, monkeypatch):
    if not libyaml:
        monkeypatch.setattr(importer, "_C_SAFE_LOADER", None)
    assert importer.parse_yaml("id: q-1\nlist: [1, [2, [3]]]\n", 4) == {"id": "q-1", "list": [1, [2, [3]]]}
    cases = {
        "a: [[[[x]]]]\n": "nesting deeper than 3 levels (line 1, column 6)",
        "a: &x [1]\nb: *x\n": "aliases (*name) are not allowed (line 2, column 4)",
        "a: !!python/name:os.system x\n": "the tag 'tag:yaml.org,2002:python/name:os.system' is not allowed",
        "a: 1\n---\nb: 2\n": "more than one YAML document",
        "a: 'open\n": "malformed YAML at line 2",
    }
    for text, message in cases.items():
        with pytest.raises(importer._Refused, match=re.escape(message)):
            importer.parse_yaml(text, 3)


def test_limits_are_configurable_and_jsonl_lines_are_checked(tmp_path, specs):
    big = json.dumps(question("cloud-9501", scenario="y" * 3000))
    (tmp_path / "b.jsonl").write_text(big + "\n" + json.dumps(question("cloud-9502")) + "\n")
    result = import_corpus(tmp_path, specs, ImportLimits(max_file_bytes=2000, max_depth=3))
    assert [r["id"] for r in result.rows] == ["cloud-9502"]
    assert errors_by_file(result) == {"b.jsonl:1": "line is above the limit of 2,000 bytes"}
    deep = import_corpus(tmp_path / "b.jsonl", specs, ImportLimits(max_depth=1))
    assert all("nesting deeper than 1 levels" in e.message for e in deep.errors) and not deep.rows
    (tmp_path / "huge.json").write_text("[" * 5000 + "]" * 5000)
    assert "nesting deeper than" in errors_by_file(import_corpus(tmp_path / "huge.json", specs))["huge.json"]


def test_a_bundle_entry_is_held_to_the_size_of_one_question(tmp_path, specs):
    """A 60 MB entry inside a bundle under the bundle limit used to pass."""
    (tmp_path / "b.json").write_text(
        json.dumps([question("cloud-9511", scenario="y" * 30_000), question("cloud-9512")])
    )
    result = import_corpus(tmp_path / "b.json", specs, ImportLimits(max_file_bytes=20_000))
    assert [r["id"] for r in result.rows] == ["cloud-9512"]
    message = errors_by_file(result)["b.json[0]"]
    assert re.fullmatch(r"entry of [\d,]+ bytes is above the limit of 20,000 bytes for one question", message)


def test_an_id_ending_in_a_newline_and_non_finite_numbers_are_refused(tmp_path, specs):
    lines = [
        json.dumps(question("cloud-9521\n")),
        json.dumps(question("cloud-9522", answer_value=float("nan"))),
        json.dumps(question("cloud-9523", details={"napkin_math": "x", "bandwidth": float("inf")})),
        json.dumps(question("cloud-9524")),
    ]
    assert "NaN" in lines[1] and "Infinity" in lines[2]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    write_yaml(tmp_path / "cloud" / "memory" / "cloud-9525.yaml", question("cloud-9525", answer_value=float("inf")))
    result = import_corpus(tmp_path, specs)
    assert [r["id"] for r in result.rows] == ["cloud-9524"]
    errors = errors_by_file(result)
    assert "is not a valid question id" in errors["b.jsonl:1"]
    assert errors["b.jsonl:2"].startswith("answer_value: not a finite number")
    assert errors["b.jsonl:3"].startswith("details.bandwidth: not a finite number")
    assert errors["cloud/memory/cloud-9525.yaml"].startswith("answer_value: not a finite number")
    assert not valid_id("cloud-9521\n") and LEVEL_PATTERN.match("l3\n") is None


def test_ids_are_validated_and_sanitized_before_any_file_name(tmp_path):
    assert valid_id("cloud-2212") and valid_id("global-cross-region-latency-l1-0")
    for hostile in ["../../etc/passwd", "/etc/passwd", "..", ".hidden", "a/b", "a\\b", "", "x" * 161, "a..b", None, 12]:
        assert not valid_id(hostile)
    stem = file_stem("../../etc/passwd")
    assert "/" not in stem and not stem.startswith(".") and stem != file_stem("..-..-etc-passwd")
    row = {c: None for c in QUESTION_COLUMNS} | {
        "id": "../../etc/passwd",
        "track": "../..",
        "level": "L3",
        "zone": "recall",
        "scenario": "s",
    }
    out = tmp_path / "out"
    export_corpus([row], out, ["yaml"])
    written = [p for p in out.rglob("*.yaml")]
    assert len(written) == 1 and written[0].resolve().is_relative_to(out.resolve())
    assert written[0].parent.parent.parent.name == "_unclassified"
    assert yaml.safe_load(written[0].read_text())["id"] == "../../etc/passwd"  # the id itself is kept inside the file


# --------------------------------------------------------------------------- the CLI


def test_cli_import_writes_parquet_and_reports_errors_on_stderr(tmp_path, warehouse, specs, capsys):
    root = tmp_path / "in"
    write_yaml(root / "cloud" / "memory" / "cloud-9601.yaml", question("cloud-9601"))
    write_yaml(root / "global" / "data" / "global-9602.yaml", question("global-9602", track="global"))
    (root / "broken.yaml").write_text("id: [\n")
    assert main(["import", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "imported 2 question(s)" in out and "track: 'global' x1" in out
    assert "error: broken.yaml: malformed YAML" in err and "broken" not in out
    table = pd.read_parquet(warehouse / "imported_corpus" / "part.parquet")
    assert sorted(table["id"]) == ["cloud-9601", "global-9602"]
    report = json.loads((warehouse / "imported_corpus" / "import_report.json").read_text())
    assert report["imported"] == 2 and report["errors"][0]["where"] == "broken.yaml"
    assert main(["sql", "SELECT count(*) AS n FROM imported_corpus WHERE track IS NULL"]) == 0
    assert capsys.readouterr().out.split()[-1] == "1"

    custom = tmp_path / "custom"
    assert main(["import", str(root / "cloud"), "--out", str(custom)]) == 0
    assert len(pd.read_parquet(custom / "part.parquet")) == 1

    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    (only_bad / "x.yaml").write_text("id: ../x\nscenario: s\n")
    capsys.readouterr()
    assert main(["import", str(only_bad)]) == 1
    assert "nothing could be imported" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- export and the round trip


@pytest.fixture(scope="module")
def generated_rows(specs):
    gen = ItemModelGenerator()
    rows = []
    for topic, track, zone, level in [
        ("kv-cache-management", "cloud", "quantify", "L3"),
        ("kv-cache-management", "edge", "design", "L4"),
        ("kv-cache-management", "cloud", "design", "L4"),
    ]:
        rows += gen.generate(specs, CellRequest(topic, track, zone, level, 2, specs.generation.seed))
    assert len(rows) == 6 and all(r["calc"] and r["platforms"] for r in rows)
    return rows


def _awkward_row() -> dict:
    """A row with None values, an empty list and text that YAML likes to misread."""
    row = {c: None for c in QUESTION_COLUMNS}
    row.update(
        {
            "id": "mobile-awkward-0001",
            "topic": "thermal-management",
            "track": "mobile",
            "zone": "recall",
            "level": "L1",
            "competency_area": "power",
            "title": "yes",
            "scenario": "  leading spaces: and a colon # not a comment\nsecond line ends with spaces   \n\n",
            "question": "null?",
            "realistic_solution": "Tab\there, unicode µW ≤ 5 — and a trailing newline\n",
            "common_mistake": "- looks like a list",
            "napkin_math": "1.0",
            "platforms": [],
            "answer_value": 1e-30,
            "mistake_value": float("nan"),
            "cost_usd": 0.0,
            "created_at": "2026-01-01T00:00:00+00:00",
            "calc": [
                {
                    "name": "x",
                    "expression": "2 * 3",
                    "value": 6.0,
                    "unit": "",
                    "label": None,
                    "source": "",
                    "kind": "derived",
                }
            ],
        }
    )
    return row


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same(a.get(k), b.get(k)) for k in set(a) | set(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _differences(originals: list[dict], back: list[dict]) -> list[str]:
    by_id = {r["id"]: r for r in back}
    problems = [f"{r['id']} missing" for r in originals if r["id"] not in by_id]
    for r in originals:
        for column in QUESTION_COLUMNS:
            if r["id"] in by_id and not _same(r[column], by_id[r["id"]][column]):
                problems.append(f"{r['id']}.{column}: {r[column]!r:.60} != {by_id[r['id']][column]!r:.60}")
    return problems


def test_export_then_import_round_trips_every_field(tmp_path, warehouse, specs, generated_rows, capsys):
    originals = [*generated_rows, _awkward_row()]
    write_parquet_atomic(pd.DataFrame(originals, columns=QUESTION_COLUMNS), warehouse / "corpus" / "part.parquet")
    out = tmp_path / "export"
    assert main(["export", "--out", str(out)]) == 0
    assert "exported 7 question(s)" in capsys.readouterr().out

    files = sorted(p.relative_to(out / "questions").as_posix() for p in (out / "questions").rglob("*.yaml"))
    assert len(files) == 7 and f"cloud/L3/implement/{generated_rows[0]['id']}.yaml" in files
    assert any(f.startswith("edge/L4/design/") for f in files)
    first = yaml.safe_load((out / "questions" / files[0]).read_text())
    assert first["schema_version"] == "1.0" and set(first["details"]) >= {
        "realistic_solution",
        "common_mistake",
        "napkin_math",
    }

    for source in ["questions", "questions.jsonl"]:
        result = import_corpus(out / source, specs)
        assert result.errors == [] and len(result.rows) == 7
        assert _differences(originals, result.rows) == [], source
        assert result.renamed[("zone", "implement", "quantify")] == 2
    parquet = pd.read_parquet(out / "questions.parquet")
    assert _differences(originals, plain(parquet.to_dict("records"))) == []

    # import -> export -> import keeps the StaffML-only fields as well
    sample = tmp_path / "staffml"
    write_yaml(
        sample / "cloud" / "memory" / "cloud-9701.yaml",
        question("cloud-9701", details={"options": ["a", "b"], "correct_index": 1}, tags=["t"]),
    )
    first_pass = import_corpus(sample, specs)
    export_corpus(first_pass.rows, tmp_path / "again", ["jsonl"])
    second_pass = import_corpus(tmp_path / "again" / "questions.jsonl", specs)
    assert _differences(first_pass.rows, second_pass.rows) == []
    again = json.loads(second_pass.rows[0]["extra"])
    assert (
        again["details"] == {"options": ["a", "b"], "correct_index": 1}
        and again["tags"] == ["t"]
        and again["bloom_level"] == "apply"
    )


def test_a_failed_export_leaves_the_previous_one_untouched(tmp_path, generated_rows, monkeypatch, warehouse, capsys):
    out = tmp_path / "export"
    export_corpus(generated_rows[:2], out)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(records, path):
        path.write_text("half a line")
        raise OSError("disk full")

    monkeypatch.setattr(exporter, "_write_jsonl", broken)
    with pytest.raises(OSError, match="disk full"):
        export_corpus(generated_rows, out)
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert _generations(out) == 1  # the failed one's folder is gone
    write_parquet_atomic(pd.DataFrame(generated_rows, columns=QUESTION_COLUMNS), warehouse / "corpus" / "part.parquet")
    assert main(["export", "--out", str(out), "--format", "jsonl"]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def _generations(out: Path) -> int:
    """How many export generations the output folder holds (only the published one, when clean)."""
    return sum(1 for p in (out / ".exports").iterdir() if p.name.startswith("gen-"))


def _published(out: Path) -> dict:
    """The ids each format of the export at ``out`` holds."""
    return {
        "yaml": sorted(p.stem for p in (out / "questions").rglob("*.yaml")),
        "jsonl": sorted(json.loads(line)["id"] for line in (out / "questions.jsonl").read_text().splitlines()),
        "parquet": sorted(pd.read_parquet(out / "questions.parquet")["id"]),
    }


KILLED_EXPORT = """
import os, sys
import pandas as pd
from pathlib import Path
from staffml_dagster.interchange import exporter
rows = pd.read_parquet(sys.argv[1]).to_dict("records")
if sys.argv[3] == "before-publish":
    exporter._before_publish = lambda generation: os._exit(9)
else:
    real_clean = exporter._clean

    def clean_then_die(out, ex):
        if (ex / "current").is_symlink() and len(list(ex.glob("gen-*"))) > 1:
            os._exit(9)
        return real_clean(out, ex)

    exporter._clean = clean_then_die
exporter.export_corpus(rows, Path(sys.argv[2]))
"""


@pytest.mark.parametrize("when", ["before-publish", "after-publish"])
def test_a_killed_export_leaves_a_whole_export_and_the_next_one_cleans_up(tmp_path, generated_rows, when):
    import subprocess
    import sys

    out = tmp_path / "export"
    export_corpus(generated_rows[:2], out)
    old = _published(out)
    assert old["yaml"] == old["jsonl"] == old["parquet"] and len(old["yaml"]) == 2
    rows = tmp_path / "rows.parquet"
    write_parquet_atomic(pd.DataFrame(generated_rows, columns=QUESTION_COLUMNS), rows)
    script = tmp_path / "killed_export.py"
    script.write_text(KILLED_EXPORT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, str(script), str(rows), str(out), when], env=env, timeout=300)
    assert done.returncode == 9  # killed where the parameter says

    now = _published(out)
    assert now["yaml"] == now["jsonl"] == now["parquet"]  # every format from one export, never a mix
    if when == "before-publish":
        assert now == old  # the previous export, whole
    else:
        assert len(now["yaml"]) == 6  # the new one, whole
    assert _generations(out) == 2  # the killed export left a folder behind ...
    export_corpus(generated_rows[:3], out)
    assert _generations(out) == 1  # ... which the next export deletes
    assert len(_published(out)["jsonl"]) == 3


def test_all_formats_switch_together_or_none(tmp_path, generated_rows, monkeypatch):
    """The second move used to fail after the YAML tree was already new (message: 'nothing written')."""
    out = tmp_path / "export"
    export_corpus(generated_rows[:2], out)
    old = _published(out)

    def no_publish(exports, generation):
        raise OSError("rename failed")

    monkeypatch.setattr(exporter, "_publish", no_publish)
    with pytest.raises(OSError, match="rename failed"):
        export_corpus(generated_rows, out)
    assert _published(out) == old and _generations(out) == 1
    monkeypatch.undo()

    # one format exported alone: the others are carried over, so the three still come from one generation
    export_corpus(generated_rows[:4], out, ["jsonl"])
    assert (
        len(_published(out)["jsonl"]) == 4
        and _published(out)["yaml"] == old["yaml"]
        and _published(out)["parquet"] == old["parquet"]
    )
    assert _generations(out) == 1 and (out / "questions").is_symlink()


def test_an_export_of_the_earlier_layout_is_taken_over(tmp_path, generated_rows):
    out = tmp_path / "export"
    (out / "questions" / "cloud").mkdir(parents=True)
    (out / "questions" / "cloud" / "old.yaml").write_text("id: old\n")
    (out / "questions.jsonl").write_text('{"id": "old"}\n')
    (out / ".export-abc123" / "questions").mkdir(parents=True)  # a staging folder a killed export left
    (out / "notes.txt").write_text("mine")
    export_corpus(generated_rows[:2], out, ["yaml", "parquet"])
    assert len(_published(out)["yaml"]) == 2 and _published(out)["jsonl"] == ["old"]  # jsonl carried over as it was
    assert not (out / ".export-abc123").exists() and (out / "notes.txt").read_text() == "mine"
    assert all((out / name).is_symlink() for name in ("questions", "questions.jsonl", "questions.parquet"))


@pytest.mark.parametrize("inside", ["", "questions"])
def test_export_into_the_warehouse_is_refused(warehouse, generated_rows, capsys, inside):
    write_parquet_atomic(pd.DataFrame(generated_rows, columns=QUESTION_COLUMNS), warehouse / "corpus" / "part.parquet")
    write_parquet_atomic(
        pd.DataFrame(generated_rows, columns=QUESTION_COLUMNS),
        warehouse / "questions" / "topic=kv-cache-management" / "track=cloud" / "part.parquet",
    )
    before = {p: p.read_bytes() for p in warehouse.rglob("*") if p.is_file()}
    assert main(["export", "--out", str(warehouse / inside)]) == 1
    assert "inside the warehouse" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in warehouse.rglob("*") if p.is_file()} == before


def test_export_without_a_corpus_says_so(warehouse, capsys):
    assert main(["export"]) == 1
    assert "no corpus table" in capsys.readouterr().err


def test_record_layout_puts_their_keys_first():
    row = {c: None for c in QUESTION_COLUMNS} | {
        "id": "edge-1",
        "zone": "quantify",
        "scenario": "s",
        "answer_value": 2.0,
        "extra": json.dumps({"status": "draft", "details": {"options": ["x"]}, "source_values": {"zone": "implement"}}),
    }
    record = row_to_record(row)
    assert list(record)[:10] == [
        "schema_version",
        "id",
        "track",
        "level",
        "zone",
        "topic",
        "competency_area",
        "title",
        "scenario",
        "question",
    ]
    assert record["zone"] == "implement" and record["status"] == "draft" and record["provenance"] == "imported"
    assert record["details"]["options"] == ["x"] and "source_values" not in record and record["answer_value"] == 2.0
    assert "calc" not in record  # None-valued additions are left out; reading them back gives None


# --------------------------------------------------------------------------- the asset


def _store_generated(rows: list[dict], warehouse: Path) -> None:
    frame = pd.DataFrame(rows, columns=QUESTION_COLUMNS)
    for (topic, track), part in frame.groupby(["topic", "track"]):
        write_parquet_atomic(
            part.drop(columns=["topic", "track"]),
            partition_dir(warehouse, "questions", {"topic": topic, "track": track}) / "part.parquet",
        )


def _materialize(run_config: dict | None = None):
    from staffml_dagster.definitions import resources
    from staffml_dagster.partitions import applicable_pairs
    from staffml_dagster.paths import warehouse_dir
    from staffml_dagster.specs import cached_specs
    from staffml_dagster.stages.applicability import applicability_rows
    from staffml_dagster.stages.capacity import cell_rows
    from staffml_dagster.stages.imported import imported_questions

    specs = cached_specs()
    write_parquet_atomic(
        cell_rows(specs, applicable_pairs(applicability_rows(specs))), warehouse_dir() / "cells" / "part.parquet"
    )
    res = resources(embedder="tfidf")
    return dg.materialize(
        [imported_questions, dg.AssetSpec("cells")], resources=res, run_config=run_config or {}, raise_on_error=False
    )


def _metadata(result):
    return result.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata


def test_imported_questions_asset_validates_dedups_and_accounts_coverage(
    tmp_path, warehouse, specs, generated_rows, monkeypatch
):
    monkeypatch.delenv("STAFFML_IMPORT_PATH", raising=False)
    _store_generated(generated_rows, warehouse)
    gen = generated_rows[0]
    root = tmp_path / "incoming"
    copy = row_to_record({**gen, "id": "cloud-9801"})
    write_yaml(root / "cloud" / "memory" / "cloud-9801.yaml", copy)  # the same content under another id
    near = row_to_record(
        {**gen, "id": "cloud-9802", "signature": None, "scenario": gen["scenario"] + " The review is on Friday."}
    )
    write_yaml(root / "cloud" / "memory" / "cloud-9802.yaml", near)
    write_yaml(
        root / "mobile" / "power" / "mobile-9803.yaml",
        question("mobile-9803", track="mobile", topic="power-budgeting", zone="fluency", level="L2"),
    )
    write_yaml(root / "global" / "data" / "global-9804.yaml", question("global-9804", track="global"))
    write_yaml(
        root / "cloud" / "memory" / "cloud-9805.yaml", question("cloud-9805", zone="mastery", level="L2")
    )  # no such cell
    (root / "broken.yaml").write_text("id: cloud-9806\nscenario: [\n")

    result = _materialize({"ops": {"imported_questions": {"config": {"path": str(root)}}}})
    assert result.success
    df = pd.read_parquet(warehouse / "imported_questions" / "part.parquet")
    rows = df.set_index("id")
    assert sorted(rows.index) == ["cloud-9801", "cloud-9802", "cloud-9805", "global-9804", "mobile-9803"]
    assert rows.loc["cloud-9801", "duplicate_of"] == gen["id"] and rows.loc["cloud-9801", "duplicate_kind"] == "exact"
    assert rows.loc["cloud-9802", "duplicate_of"] == gen["id"] and rows.loc["cloud-9802", "duplicate_kind"] == "near"
    assert rows.loc["cloud-9802", "duplicate_similarity"] > specs.quality.similarity_threshold
    assert (
        not rows.loc["cloud-9801", "distinctness_ok"]
        and f"same content as generated question {gen['id']}" in rows.loc["cloud-9801", "distinctness_reason"]
    )
    assert pd.isna(rows.loc["mobile-9803", "duplicate_of"])
    assert "no counterpart in specs/ for track=global" in rows.loc["global-9804", "specificity_reason"]
    assert not rows.loc["global-9804", "passed"]
    assert "zone mastery fits levels L6+, not L2" in rows.loc["cloud-9805", "specificity_reason"]
    assert not rows.loc[
        "mobile-9803", "computability_ok"
    ]  # free text: no calc to recompute, like any generated question without one
    assert (
        rows.loc["cloud-9801", "computability_ok"] and rows.loc["cloud-9801", "grounding_ok"]
    )  # carried calc is re-evaluated

    meta = _metadata(result)
    assert (
        meta["dagster/row_count"].value == 5
        and meta["import_errors"].value == 1
        and "broken.yaml" in meta["import_error_list"].value
    )
    assert meta["duplicates_of_generated"].value == 2 and meta["generated_compared"].value == len(generated_rows)
    assert meta["unmapped"].value == {"track": {"global": 1}}
    coverage = meta["coverage"].value
    assert coverage["imported"] == 5 and coverage["fully_classified"] == 4
    assert (
        coverage["cells_filled"] == 2 and coverage["questions_outside_our_cells"] == 1
    )  # cloud L3 quantify holds 2, mobile L2 fluency 1
    assert meta["cells_filled"].value == 2
    assert "kv-cache-management" in meta["per_topic_track"].value and "quantify" in meta["per_zone"].value
    assert "mastery" in meta["outside_our_cells"].value


def test_imported_questions_asset_without_a_path_is_an_empty_table(warehouse, monkeypatch):
    monkeypatch.delenv("STAFFML_IMPORT_PATH", raising=False)
    result = _materialize()
    assert result.success
    assert "no import path configured" in _metadata(result)["note"].value
    df = pd.read_parquet(warehouse / "imported_questions" / "part.parquet")
    assert df.empty and {"id", "passed", "duplicate_of", "extra"} <= set(df.columns)


def test_imported_questions_asset_reads_the_env_path_and_fails_on_a_missing_one(tmp_path, warehouse, monkeypatch):
    root = tmp_path / "env-corpus"
    write_yaml(
        root / "edge" / "latency" / "edge-9901.yaml",
        question("edge-9901", track="edge", topic="latency-decomposition", competency_area="latency"),
    )
    monkeypatch.setenv("STAFFML_IMPORT_PATH", str(root))
    result = _materialize()
    assert result.success and _metadata(result)["dagster/row_count"].value == 1
    monkeypatch.setenv("STAFFML_IMPORT_PATH", str(tmp_path / "nowhere"))
    failed = _materialize()
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    assert (
        failure.step_failure_data.user_failure_data.description == f"import path {tmp_path / 'nowhere'} does not exist"
    )


# --------------------------------------------------------------------------- the published sample


@pytest.mark.skipif(not SAMPLE.exists(), reason="../shared/reference/staffml_questions_sample.jsonl is not present")
def test_the_published_sample_imports(specs):
    result = import_corpus(SAMPLE, specs)
    assert result.errors == [] and len(result.rows) == 40
    assert dict(result.unmapped) == {"track": {"global": 8}}
    assert dict(result.renamed) == {("zone", "implement", "quantify"): 1}
    df = result.frame()
    mapped = df[df["track"].notna()]
    assert len(mapped) == 32 and mapped[["topic", "zone", "level", "competency_area"]].notna().all().all()
    assert df["topic"].notna().all()  # every sample topic is one of our 86
    extra = [json.loads(e) for e in df["extra"]]
    assert all(e["schema_version"] == "1.0" and "bloom_level" in e for e in extra)
    assert sum("options" in e for e in extra) == 5  # multiple-choice options survive in extra
    reviewed = review_imported(df, specs, get_embedder("tfidf"))
    assert len(reviewed) == 40
    assert not reviewed["computability_ok"].any()  # free-text questions carry no calc steps
    assert reviewed.loc[df["track"].isna().values, "specificity_reason"].str.contains("track=global").all()
