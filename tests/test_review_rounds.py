"""Review rounds (quality/review_rounds.py, `staffml review export|import`): blind sheets out,
hostile filled files in, and the round trip through a real headless browser."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from staffml_dagster import cli
from staffml_dagster.quality import review_rounds as rr
from staffml_dagster.quality.agreement import RUBRIC_CRITERIA

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALL_SCORES = [*RUBRIC_CRITERIA, rr.SMELL]
NAPKIN = (
    "**Assumptions & Constraints:**\n- HBM bandwidth: 3.35 TB/s (specs/hardware.yaml: h100_sxm.memory_bandwidth)\n\n"
    "**Calculations:**\n- t = 140 GB / 3.35 TB/s = 41.8 ms\n\n**Conclusion:**\nDecode is memory bound."
)


def corpus_rows(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": f"gen{i:03d}secret",
                "topic": "kv-cache-management",
                "track": "cloud",
                "zone": "diagnosis",
                "level": "L4",
                "title": f"Decode stalls {i}",
                "scenario": f"A <b>serving</b> fleet & scenario {i}.",
                "question": "=Why is decode slow?",
                "realistic_solution": "It is memory bound.",
                "common_mistake": "**The Pitfall:** Using peak FLOPs.",
                "napkin_math": NAPKIN,
                "item_model": "imodel-zz",
                "backend": "offline-zz",
                "signature": f"sig-{i}",
            }
            for i in range(n)
        ]
    )


def calibration_file(tmp_path: Path) -> Path:
    path = tmp_path / "published.jsonl"
    rows = [
        {
            "id": f"pub{i}",
            "track": "edge",
            "zone": "diagnosis",
            "level": "L3",
            "topic": "real-time-deadlines",
            "title": f"Published {i}",
            "scenario": "Published scenario.",
            "question": "What breaks?",
            "realistic_solution": "Contention.",
            "common_mistake": "Peak.",
            "napkin_math": "- 30 ms + 25 ms = 55 ms",
        }
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def data(warehouse):
    """A warehouse holding a small corpus (partitioned like the pipeline's)."""
    part = warehouse / "corpus" / "topic=kv-cache-management" / "track=cloud"
    part.mkdir(parents=True)
    corpus_rows().drop(columns=["topic", "track"]).to_parquet(part / "part.parquet", index=False)
    return warehouse.parent


def _export(data: Path, tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    out = tmp_path / "sheet"
    assert cli.main(["review", "export", "--seed", "4", "--out", str(out), *extra]) == 0
    html_file = next(out.glob("*.html"))
    sheet = html_file.stem.removeprefix("review-")
    return out, json.loads((data / "reviews" / "sheets" / f"{sheet}.json").read_text())


def _scores(item: str, **over) -> dict:
    row = {"item": item, **{c: 1 for c in RUBRIC_CRITERIA}, rr.SMELL: 1, "reasons": {}}
    row.update(over)
    return row


def test_sheet_is_blind_self_contained_and_keyed(data, tmp_path, capsys):
    out, key = _export(data, tmp_path, "--calibration", "2", "--calibration-file", str(calibration_file(tmp_path)))
    page = next(out.glob("*.html")).read_text()
    sheet_csv = next(out.glob("*.csv")).read_text()
    assert len(key["items"]) == 8
    assert sorted(e["source"] for e in key["items"].values()) == ["calibration"] * 2 + ["corpus"] * 6
    for text in (page, sheet_csv):
        for secret in ("secret", "imodel-zz", "offline-zz", "sig-", "specs/hardware.yaml", "pub0", "pub1", "pub2"):
            assert secret not in text, secret
    assert all(rr.ITEM_KEY_RE.fullmatch(k) for k in key["items"])  # opaque keys, not ids
    # every item carries every criterion as radio buttons with a reason box; text is escaped
    for k in key["items"]:
        for c in ALL_SCORES:
            assert f'name="{k}.{c}"' in page and f'name="{k}.{c}.reason"' in page
    assert "A &lt;b&gt;serving&lt;/b&gt; fleet &amp; scenario" in page and "<b>serving</b>" not in page
    assert "<b>Assumptions &amp; Constraints:</b>" in page and "<b>The Pitfall:</b>" in page and "**" not in page
    # offline: no URL to fetch anything from, and a policy forbidding it
    assert "default-src 'none'" in page and "http://" not in page and "https://" not in page
    # the spreadsheet cannot take a cell for a formula
    rows = list(csv.DictReader(io.StringIO(sheet_csv)))
    assert {r["question"] for r in rows if r["title"].startswith("Decode")} == {" =Why is decode slow?"}
    assert "corpus, 2 calibration" in capsys.readouterr().out
    # the same draw again is refused (its key would be overwritten) unless forced
    assert (
        cli.main(
            [
                "review",
                "export",
                "--seed",
                "4",
                "--out",
                str(out),
                "--calibration",
                "2",
                "--calibration-file",
                str(calibration_file(tmp_path)),
            ]
        )
        == 1
    )
    assert "already exported" in capsys.readouterr().err


def test_export_selection_errors(data, tmp_path, capsys):
    assert cli.main(["review", "export", "--ids", "gen001secret,nosuch", "--out", str(tmp_path / "o")]) == 1
    assert "not in the corpus: nosuch" in capsys.readouterr().err
    assert cli.main(["review", "export", "--where", "level = 'L6+'", "--out", str(tmp_path / "o")]) == 1
    assert "selection is empty" in capsys.readouterr().err
    assert cli.main(["review", "export", "--where", "no_such_column = 1", "--out", str(tmp_path / "o")]) == 1
    assert "--where" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    assert (
        cli.main(["review", "export", "--where", "title LIKE '%1' OR title LIKE '%2'", "--out", str(tmp_path / "o")])
        == 0
    )
    assert "2 items" in capsys.readouterr().out


def test_an_unreadable_sheet_leaves_the_warehouse_untouched(data, tmp_path, capsys):
    """A refused import used to create <warehouse>/reviews/.lock, the lock of a write that never came."""
    broken = tmp_path / "filled.json"
    broken.write_text('{"sheet": ')
    before = sorted(p.relative_to(data) for p in (data / "warehouse").rglob("*"))
    assert cli.main(["review", "import", str(broken), "--round", "1", "--reviewer", "a"]) == 1
    assert "filled.json: not valid JSON" in capsys.readouterr().err
    assert sorted(p.relative_to(data) for p in (data / "warehouse").rglob("*")) == before


@pytest.mark.parametrize(
    "where",
    [
        "1=1); COPY (SELECT 1 AS x) TO '{part}'; --",
        "1=1); DROP VIEW corpus; --",
        "1=1); SELECT 1 AS x; --",
    ],
)
def test_where_is_one_condition_not_statements(data, tmp_path, capsys, where):
    """`--where "1=1); COPY (...) TO '<warehouse>/corpus/.../part.parquet'; --"` used to run the COPY
    and replace the corpus with one row."""
    part = next((data / "warehouse" / "corpus").rglob("part.parquet"))
    before = {p: p.read_bytes() for p in (data / "warehouse").rglob("*") if p.is_file()}
    assert cli.main(["review", "export", "--out", str(tmp_path / "o"), "--where", where.format(part=part)]) == 1
    err = capsys.readouterr().err
    assert "review export failed, nothing written: --where" in err and "one condition over the corpus" in err
    assert {p: p.read_bytes() for p in (data / "warehouse").rglob("*") if p.is_file()} == before
    assert not (tmp_path / "o").exists()


def test_where_reads_only_the_warehouse(data, tmp_path, capsys):
    """The selection runs on the sql shell's locked-down connection: no file outside the warehouse."""
    where = "id IN (SELECT column0 FROM read_csv('/etc/passwd', header = false, delim = ':'))"
    assert cli.main(["review", "export", "--out", str(tmp_path / "o"), "--where", where]) == 1
    err = capsys.readouterr().err
    assert "review export failed, nothing written: --where" in err and "/etc/passwd" in err and "Permission" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("inside", ["", "corpus", "corpus/topic=kv-cache-management"])
def test_a_sheet_into_the_warehouse_is_refused(data, capsys, inside):
    """`review export --out data/warehouse/corpus` used to put the sheet among the corpus table's files."""
    warehouse = data / "warehouse"
    before = {p: p.read_bytes() for p in warehouse.rglob("*") if p.is_file()}
    assert cli.main(["review", "export", "--out", str(warehouse / inside)]) == 1
    err = capsys.readouterr().err
    assert "review export failed, nothing written: --out" in err and "inside the warehouse" in err
    assert {p: p.read_bytes() for p in warehouse.rglob("*") if p.is_file()} == before
    assert not (data / "reviews").exists()  # no key either


def test_hostile_review_files(data, tmp_path, capsys):
    out, key = _export(data, tmp_path)
    sheet, items = key["sheet"], sorted(key["items"])
    a, b, c, d, e, f = items
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "sheet": sheet,
                "reviewer": "ana",
                "scores": [
                    _scores(a),
                    _scores(b, staff_worthy=0, reasons={"staff_worthy": "one formula at L4"}),
                    _scores("0123456789"),  # unknown item
                    _scores(c, grounding=None),  # missing score
                    _scores(d, zone_fit=2),  # out of range
                    _scores(e, coherent=0),  # a 0 without a reason
                    _scores(a, topic_fit=0, reasons={"topic_fit": "x"}),  # ana scored item a twice
                    "not an object",
                    _scores(f, template_smell=3, reasons={"nosuch": "y"}),  # two problems, one error line
                ],
            }
        )
    )
    wrong = tmp_path / "ben.json"
    wrong.write_text(json.dumps({"sheet": sheet, "reviewer": "ben", "scores": [_scores(c)]}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert cli.main(["review", "import", str(good), str(wrong), str(broken), "--round", "1", "--reviewer", "ana"]) == 0
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 9, captured.err
    text = "\n".join(errors)
    assert f"{good}: scores[2] (item 0123456789): unknown item, not on sheet {sheet}" in text
    assert f"{good}: scores[3] (item {c}): grounding missing" in text
    assert f"{good}: scores[4] (item {d}): zone_fit must be 0 or 1, got '2'" in text
    assert f"{good}: scores[5] (item {e}): coherent is 0 without a reason" in text
    assert (
        f"{good}: scores[6] (item {a}): reviewer ana scored this item twice in round 1 (first at {good}: scores[0])"
        in text
    )
    assert f"{good}: scores[7]: not an object" in text
    assert (
        f"{good}: scores[8] (item {f}): template_smell must be 0, 1 or 2, got '3'; reason for unknown criterion "
        "'nosuch'" in text
    )
    assert f"{wrong}: the sheet was saved by reviewer 'ben', not --reviewer 'ana'" in text
    assert f"{broken}: not valid JSON" in text
    assert "2 review row(s) kept from 3 file(s), 9 error(s)" in captured.out

    table = pd.read_parquet(data / "warehouse" / "reviews" / "part.parquet")
    assert sorted(table["question_id"]) == sorted(key["items"][k]["question_id"] for k in (a, b))
    assert set(table["reviewer"]) == {"ana"} and set(table["round"]) == {1}
    assert json.loads(table.set_index("question_id").loc[key["items"][b]["question_id"], "reasons"]) == {
        "staff_worthy": "one formula at L4"
    }

    # importing the same file again: every row is a second score in round 1, nothing written
    before = (data / "warehouse" / "reviews" / "part.parquet").read_bytes()
    again = tmp_path / "again.json"
    again.write_text(json.dumps({"sheet": sheet, "reviewer": "ana", "scores": [_scores(a)]}))
    assert cli.main(["review", "import", str(again), "--round", "1", "--reviewer", "ana"]) == 1
    assert "already imported from good.json" in capsys.readouterr().err
    assert (data / "warehouse" / "reviews" / "part.parquet").read_bytes() == before
    # round 2 is a new round
    assert cli.main(["review", "import", str(again), "--round", "2", "--reviewer", "ana"]) == 0
    assert len(pd.read_parquet(data / "warehouse" / "reviews" / "part.parquet")) == 3

    # arguments and files the import refuses outright
    assert cli.main(["review", "import", str(tmp_path / "missing.json"), "--round", "1", "--reviewer", "ana"]) == 2
    assert cli.main(["review", "import", str(again), "--round", "0", "--reviewer", "ana"]) == 2
    assert cli.main(["review", "import", str(again), "--round", "3", "--reviewer", "../etc"]) == 2
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (rr.MAX_FILE_BYTES + 1))
    assert cli.main(["review", "import", str(huge), "--round", "3", "--reviewer", "ana"]) == 1
    assert "over the 5000000-byte limit" in capsys.readouterr().err


def test_csv_round_trip_and_atomic_table(data, tmp_path, capsys, monkeypatch):
    out, key = _export(data, tmp_path)
    sheet_csv = next(out.glob("*.csv"))
    rows = list(csv.DictReader(io.StringIO(sheet_csv.read_text())))
    for i, row in enumerate(rows):
        if i == 5:
            continue  # left blank: not scored, not an error
        for c in ALL_SCORES:
            row[c] = "1"
        if i == 0:
            row["math_correct"], row["reason_math_correct"] = (
                "0",
                "41.8 ms is 140 GB / 3.35 TB/s, fine, but the batch is ignored",
            )
        if i == 1:
            row["topic_fit"] = "yes"
        if i == 2:
            row["coherent"] = "1.0"  # as a spreadsheet may save it
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's BOM
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert cli.main(["review", "import", str(filled), "--round", "1", "--reviewer", "cy"]) == 0
    captured = capsys.readouterr()
    assert f"{filled}: row 3 (item {rows[1]['item']}): topic_fit must be 0 or 1, got 'yes'" in captured.err
    assert "4 review row(s) kept" in captured.out
    table = pd.read_parquet(data / "warehouse" / "reviews" / "part.parquet")
    first = table.set_index("question_id").loc[key["items"][rows[0]["item"]]["question_id"]]
    assert first["math_correct"] == 0 and "batch is ignored" in json.loads(first["reasons"])["math_correct"]

    # a failure while writing leaves the previous table as it was
    before = (data / "warehouse" / "reviews" / "part.parquet").read_bytes()
    import pyarrow.parquet as pq

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    rows[1]["topic_fit"] = "1"
    with filled.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(rows[1])
    assert cli.main(["review", "import", str(filled), "--round", "1", "--reviewer", "cy"]) == 2
    assert "disk full" in capsys.readouterr().err
    assert (data / "warehouse" / "reviews" / "part.parquet").read_bytes() == before
    assert not [
        p for p in (data / "warehouse" / "reviews").iterdir() if p.name not in ("part.parquet", ".lock")
    ]  # no temp file left


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)")
def test_browser_round_trip(data, tmp_path, capsys):
    """Export -> fill in headless Chromium (radio buttons, a reason, the name) -> Save -> import."""
    from playwright.sync_api import sync_playwright

    out, key = _export(data, tmp_path)
    page_file = next(out.glob("*.html"))
    saved = tmp_path / "saved.json"
    profile = tempfile.mkdtemp(prefix="staffml-chromium-")
    requests: list[str] = []
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, accept_downloads=True
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.on("request", lambda r: requests.append(r.url))
                page.set_default_timeout(30_000)
                page.goto(page_file.as_uri())
                page.fill("#reviewer", "dee")
                articles = page.locator("article.item")
                assert articles.count() == 6
                for i in range(4):  # the first four items scored; the last two left blank
                    art = articles.nth(i)
                    k = art.get_attribute("data-item")
                    for c in RUBRIC_CRITERIA:
                        value = "0" if (i == 1 and c == "staff_worthy") else "1"
                        art.locator(f'input[name="{k}.{c}"][value="{value}"]').check()
                    art.locator(f'input[name="{k}.template_smell"][value="{i % 3}"]').check()
                    if i == 1:
                        art.locator(f'input[name="{k}.staff_worthy.reason"]').fill("a lookup, not an L4 diagnosis")
                with page.expect_download() as dl:
                    page.click("#save")
                dl.value.save_as(saved)
                assert "4 item(s) saved" in page.inner_text("#status")
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests

    doc = json.loads(saved.read_text())
    assert doc["sheet"] == key["sheet"] and doc["reviewer"] == "dee" and len(doc["scores"]) == 4
    assert cli.main(["review", "import", str(saved), "--round", "1", "--reviewer", "dee"]) == 0
    assert "4 review row(s) kept from 1 file(s), 0 error(s)" in capsys.readouterr().out
    table = pd.read_parquet(data / "warehouse" / "reviews" / "part.parquet")
    assert len(table) == 4 and table["staff_worthy"].sum() == 3
    worst = table[table["staff_worthy"] == 0].iloc[0]
    assert json.loads(worst["reasons"]) == {"staff_worthy": "a lookup, not an L4 diagnosis"}
    assert sorted(table["template_smell"]) == [0, 0, 1, 2]


def test_rejected_items_are_mixed_in_like_corpus_items(data, tmp_path, capsys):
    part = data / "warehouse" / "validated_questions" / "topic=kv-cache-management" / "track=cloud"
    part.mkdir(parents=True)
    validated = corpus_rows(9)
    validated["id"] = [f"gen{i:03d}secret" if i < 6 else f"rej{i:03d}secret" for i in range(9)]
    validated["passed"] = [True] * 6 + [False] * 3
    validated.drop(columns=["topic", "track"]).to_parquet(part / "part.parquet", index=False)
    out, key = _export(data, tmp_path, "--n", "3", "--rejected", "2")
    sources = sorted(e["source"] for e in key["items"].values())
    assert sources == ["corpus"] * 3 + ["rejected"] * 2
    assert {e["question_id"] for e in key["items"].values() if e["source"] == "rejected"} <= {
        "rej006secret",
        "rej007secret",
        "rej008secret",
    }
    assert "secret" not in next(out.glob("*.html")).read_text()
    assert "2 rejected by the gate" in capsys.readouterr().out
    assert (
        cli.main(["review", "export", "--n", "1", "--rejected", "4", "--seed", "5", "--out", str(tmp_path / "o")]) == 1
    )
    assert "asked for 4 rejected items, validated_questions holds 3 the gate rejected" in capsys.readouterr().err
