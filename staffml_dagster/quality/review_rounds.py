"""Review rounds with people: blind review sheets out, validated scores in.

The protocol is ``../shared/docs/REVIEW_RUBRIC.md`` (the one ``benchmarks/reviews/`` follows
by hand): a sample or a selection of the corpus, optionally shuffled with published
calibration items, every item rendered the same way (``review_text.normalise_text``) with
nothing that tells the sources apart, scored on seven 0/1 criteria with a reason for every 0,
plus ``template_smell`` 0-2.

- :func:`build_sheet` turns rows into sheet items under opaque keys (a hash of the sheet id
  and the question id; no id, generator, item model or backend is shown) and the key that maps
  them back, kept away from the reviewer under ``<data>/reviews/sheets/<sheet>.json``.
- :func:`render_html` writes one self-contained offline page (no network, no external file):
  the rubric as radio buttons with a reason box per criterion, saved as a JSON file through a
  Blob download. :func:`render_csv` is the same sheet for spreadsheet users.
- :func:`read_review_files` + :func:`validate_reviews` read filled sheets back (JSON from the
  page, or the CSV): every bad row gets one error naming the file and row (unknown item, a
  missing or out-of-range score, a 0 without a reason, an item the reviewer scored twice) and
  the other rows are kept.
- :func:`write_reviews` merges them into the ``reviews`` table (one row per question id,
  reviewer, round; ``<warehouse>/reviews/part.parquet``, the DuckDB view ``reviews``), through
  a temp file and a rename.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import hashlib
import html
import io
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from staffml_dagster.quality.agreement import RUBRIC_CRITERIA
from staffml_dagster.quality.review_text import META_FIELDS, SECTIONS, normalise_text

SMELL = "template_smell"
SMELL_VALUES = (0, 1, 2)
SOURCES = ("corpus", "rejected", "calibration")
REVIEWS_TABLE = "reviews"
REVIEW_COLUMNS = [
    "question_id",
    "reviewer",
    "round",
    "source",
    "sheet",
    *RUBRIC_CRITERIA,
    SMELL,
    "reasons",
    "file",
    "imported_at",
]
MAX_FILE_BYTES = 5_000_000
MAX_REASON_CHARS = 500
REVIEWER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
SHEET_RE = re.compile(r"^[a-z0-9-]{1,64}$")
ITEM_KEY_RE = re.compile(r"^[a-f0-9]{10}$")
PREFERRED_TRACKS = ("cloud", "edge", "mobile", "tinyml")

# The rubric as the reviewer sees it next to the radio buttons (REVIEW_RUBRIC.md, shortened).
CRITERION_HELP = {
    "topic_fit": (
        "Answering requires understanding of the stated topic itself, not a generic calculation dressed in its words."
    ),
    "zone_fit": (
        "The cognitive task is the zone's (diagnosis, evaluation, design, ...) and the level matches the difficulty."
    ),
    "grounding": (
        "Hardware figures are real and right for the named part, the part belongs to the track, no invented names."
    ),
    "math_correct": (
        "Your own recomputation agrees with the answer, and the answer is consistent with the scenario's figures."
    ),
    "mistake_real": (
        "The common mistake is one a real engineer makes, its wrong value follows from it, its consequence is true."
    ),
    "coherent": (
        "Scenario, question and solution are one realistic situation; every figure is used or a deliberate distractor."
    ),
    "staff_worthy": "You would use it, at most lightly edited, when interviewing for the stated level.",
    SMELL: "0 reads as written by a person, 1 somewhat formulaic, 2 clearly assembled from templates.",
}


class ReviewError(ValueError):
    """A review sheet cannot be built or a review file cannot be read at all."""


# --------------------------------------------------------------------------- drawing


def draw_items(
    corpus: pd.DataFrame,
    n: int | None,
    seed: int,
    calibration: pd.DataFrame | None = None,
    calibration_n: int = 0,
    rejected: pd.DataFrame | None = None,
    rejected_n: int = 0,
) -> pd.DataFrame:
    """``n`` random corpus rows (all when None), ``rejected_n`` rows the gate rejected (rendered
    like corpus rows, so that agreement can show whether the gate rejects what people reject)
    and ``calibration_n`` published rows, preferring calibration items on our tracks and zones (a
    zone only one source uses would give it away). A ``source`` column says which is which."""
    required = [f for f, _ in META_FIELDS] + [f for f, _ in SECTIONS] + ["id"]
    missing = [f for f in required if f not in corpus.columns]
    if missing:
        raise ReviewError(f"the corpus lacks column(s) {', '.join(missing)}")
    rows = corpus.sort_values("id", kind="stable")
    if n is not None:
        if n > len(rows):
            raise ReviewError(f"asked for {n} corpus items, the selection holds {len(rows)}")
        rows = rows.sample(n=n, random_state=seed)
    rows = rows.assign(source="corpus")
    if rejected_n > 0:
        pool = rejected if rejected is not None else pd.DataFrame()
        pool = pool[~pool["id"].isin(set(rows["id"]))] if len(pool) else pool
        if rejected_n > len(pool):
            raise ReviewError(
                f"asked for {rejected_n} rejected items, validated_questions holds {len(pool)} the gate rejected"
                + (" in the selection" if len(pool) else "")
            )
        picked = pool.sort_values("id", kind="stable").sample(n=rejected_n, random_state=seed)
        rows = pd.concat([rows, picked.assign(source="rejected")], ignore_index=True)
    if calibration_n > 0:
        if calibration is None or calibration.empty:
            raise ReviewError("calibration items asked for, but the calibration file holds none")
        missing = [f for f in required if f not in calibration.columns]
        if missing:
            raise ReviewError(f"the calibration file lacks field(s) {', '.join(missing)}")
        cal = calibration.sort_values("id", kind="stable")
        preferred = cal["track"].isin(PREFERRED_TRACKS) & cal["zone"].isin(set(corpus["zone"].dropna()))
        ordered = pd.concat(
            [cal[preferred].sample(frac=1.0, random_state=seed), cal[~preferred].sample(frac=1.0, random_state=seed)]
        )
        if calibration_n > len(ordered):
            raise ReviewError(f"asked for {calibration_n} calibration items, the calibration file holds {len(ordered)}")
        rows = pd.concat([rows, ordered.head(calibration_n).assign(source="calibration")], ignore_index=True)
    return rows.reset_index(drop=True)


def read_calibration(path: Path) -> pd.DataFrame:
    """The published StaffML rows (JSONL)."""
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"calibration file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ReviewError(f"{path}:{number}: not JSON: {exc}") from exc
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- sheets


def sheet_id_for(question_ids: list[str], seed: int, date: str) -> str:
    digest = hashlib.sha256(("\n".join(sorted(question_ids)) + f"\n{seed}").encode()).hexdigest()[:8]
    return f"{date}-{digest}"


def item_key(sheet: str, question_id: str) -> str:
    return hashlib.sha256(f"{sheet}\n{question_id}".encode()).hexdigest()[:10]


@dataclass
class Sheet:
    sheet: str
    items: list[dict]  # what the reviewer sees: key, number, meta fields and sections, normalised
    key: dict[str, dict] = field(default_factory=dict)  # item key -> {question_id, source}


def build_sheet(rows: pd.DataFrame, seed: int, shuffle: bool = True, date: str | None = None) -> Sheet:
    """Blind items in a (seeded) shuffled order under opaque keys."""
    records = rows.to_dict("records")
    date = date or _dt.date.today().isoformat()
    sheet = sheet_id_for([str(r["id"]) for r in records], seed, date)
    if shuffle:
        random.Random(seed).shuffle(records)
    items, key = [], {}
    for number, r in enumerate(records, 1):
        k = item_key(sheet, str(r["id"]))
        if k in key:
            raise ReviewError(f"question {r['id']} appears twice in the selection")
        item = {"item": k, "number": number}
        for f, _ in (*META_FIELDS, *SECTIONS):
            item[f] = normalise_text(r.get(f), f)
        items.append(item)
        key[k] = {"question_id": str(r["id"]), "source": r.get("source", "corpus")}
    return Sheet(sheet, items, key)


_PAGE_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;line-height:1.4}
article{border:1px solid #bbb;border-radius:6px;padding:0.5rem 1rem;margin:1.5rem 0}
.text{white-space:pre-wrap;font-family:inherit;background:#f7f7f7;padding:0.5rem;border-radius:4px}
fieldset{border:1px solid #ddd;margin:0.4rem 0}fieldset p{margin:0.2rem 0;color:#555;font-size:0.9em}
input.reason{width:100%;box-sizing:border-box}.meta{color:#333}#status{margin-left:1rem}
"""

_PAGE_SCRIPT = r"""
(function(){
  var SHEET = document.body.getAttribute("data-sheet");
  var CRITERIA = JSON.parse(document.getElementById("criteria").textContent);
  var SMELL = "template_smell";
  function picked(name){
    var el=document.querySelector('input[type=radio][name="'+name+'"]:checked');
    return el?parseInt(el.value,10):null;
  }
  function collect(){
    var rows=[], incomplete=[];
    document.querySelectorAll("article.item").forEach(function(a){
      var key=a.getAttribute("data-item"), row={item:key}, reasons={}, answered=0;
      CRITERIA.concat([SMELL]).forEach(function(c){
        var v=picked(key+"."+c); row[c]=v; if(v!==null){answered++;}
        var r=a.querySelector('input.reason[name="'+key+"."+c+'.reason"]');
        if(r && r.value.trim()){reasons[c]=r.value.trim();}
      });
      row.reasons=reasons;
      if(answered>0 || Object.keys(reasons).length>0){
        rows.push(row);
        if(answered<CRITERIA.length+1){incomplete.push(a.getAttribute("data-number"));}
      }
    });
    return {rows:rows, incomplete:incomplete};
  }
  document.getElementById("save").addEventListener("click", function(){
    var got=collect();
    var data={sheet:SHEET, reviewer:document.getElementById("reviewer").value.trim(),
              saved_at:new Date().toISOString(), scores:got.rows};
    var blob=new Blob([JSON.stringify(data,null,2)],{type:"application/json"});
    var a=document.createElement("a");
    a.href=URL.createObjectURL(blob);
    a.download="review-"+SHEET+(data.reviewer?"-"+data.reviewer.replace(/[^A-Za-z0-9._-]/g,"_"):"")+".json";
    document.body.appendChild(a); a.click(); a.remove();
    document.getElementById("status").textContent=got.rows.length+" item(s) saved"+
      (got.incomplete.length?"; incomplete: item "+got.incomplete.join(", "):"");
  });
})();
"""


def _labels_bold(escaped: str) -> str:
    """The house style's ``**Label:**`` sub-labels in bold (on already escaped text)."""
    return re.sub(r"\*\*([A-Za-z][A-Za-z &;]{0,40}):\*\*", r"<b>\1:</b>", escaped)


def render_html(sheet: Sheet) -> str:
    """The review page: self-contained (inline style and script, a policy that forbids any
    network request), every text HTML-escaped."""
    e = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">",
        f"<title>Review sheet {e(sheet.sheet)}</title><style>{_PAGE_STYLE}</style></head>",
        f'<body data-sheet="{e(sheet.sheet)}">',
        f"<h1>Review sheet {e(sheet.sheet)}</h1>",
        f"<p>{len(sheet.items)} items. Score each criterion 1 (passes) or 0 (fails), with a one-line reason for every "
        "0, and template_smell 0-2. Recompute the napkin math and check every hardware figure you know. Items you "
        "leave blank are not saved. When done, press <b>Save scores</b>: your browser downloads a JSON file; send it "
        "back as it is.</p>",
        '<p><label>Your name <input id="reviewer" autocomplete="off"></label></p>',
        "<details><summary>The rubric</summary><dl>",
        *[f"<dt>{e(c)}</dt><dd>{e(CRITERION_HELP[c])}</dd>" for c in (*RUBRIC_CRITERIA, SMELL)],
        "</dl></details>",
    ]
    for item in sheet.items:
        k = e(item["item"])
        out.append(
            f'<article class="item" data-item="{k}" data-number="{item["number"]}"><h2>Item {item["number"]}</h2>'
        )
        out.append(
            '<ul class="meta">' + "".join(f"<li>{e(name)}: {e(item[f])}</li>" for f, name in META_FIELDS) + "</ul>"
        )
        for f, name in SECTIONS:
            out.append(f'<h3>{e(name)}</h3><div class="text">{_labels_bold(e(item[f]))}</div>')
        for c in (*RUBRIC_CRITERIA, SMELL):
            values = SMELL_VALUES if c == SMELL else (1, 0)
            radios = "".join(f'<label><input type="radio" name="{k}.{c}" value="{v}"> {v}</label> ' for v in values)
            hint = "reason (optional)" if c == SMELL else "reason (required for a 0)"
            out.append(
                f'<fieldset data-criterion="{c}"><legend>{c}</legend><p>{e(CRITERION_HELP[c])}</p>{radios}'
                f'<input class="reason" type="text" maxlength="{MAX_REASON_CHARS}" name="{k}.{c}.reason" '
                f'placeholder="{hint}">'
                "</fieldset>"
            )
        out.append("</article>")
    out += [
        '<p><button id="save" type="button">Save scores</button><span id="status"></span></p>',
        f'<script type="application/json" id="criteria">{json.dumps(list(RUBRIC_CRITERIA))}</script>',
        f"<script>{_PAGE_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"


CSV_TEXT_COLUMNS = [f for f, _ in META_FIELDS] + [f for f, _ in SECTIONS]
CSV_SCORE_COLUMNS = [*RUBRIC_CRITERIA, SMELL]
CSV_COLUMNS = [
    "sheet",
    "item",
    "number",
    *CSV_TEXT_COLUMNS,
    *CSV_SCORE_COLUMNS,
    *[f"reason_{c}" for c in CSV_SCORE_COLUMNS],
]


def _cell(text: str) -> str:
    # a cell opening with = + - @ is a formula to a spreadsheet: a leading space keeps it text
    return " " + text if text[:1] in ("=", "+", "-", "@") else text


def render_csv(sheet: Sheet) -> str:
    """The same sheet as CSV, one row per item, empty score and reason columns to fill in."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writeheader()
    for item in sheet.items:
        row = {c: "" for c in CSV_COLUMNS}
        row.update(sheet=sheet.sheet, item=item["item"], number=item["number"])
        row.update({f: _cell(item[f]) for f in CSV_TEXT_COLUMNS})
        w.writerow(row)
    return buf.getvalue()


def sheets_dir(data: Path) -> Path:
    return Path(data) / "reviews" / "sheets"


def write_sheet(sheet: Sheet, out_dir: Path, data: Path, force: bool = False) -> dict[str, Path]:
    """``<out_dir>/review-<sheet>.html`` and ``.csv`` for the reviewer, the key under
    ``<data>/reviews/sheets/<sheet>.json``. Built in a staging folder and moved into place, so
    a failure leaves nothing half-written."""
    out_dir = Path(out_dir)
    warehouse = (Path(data) / "warehouse").resolve()
    if out_dir.resolve() == warehouse or warehouse in out_dir.resolve().parents:
        raise ReviewError(
            f"--out {out_dir}: refused, it is inside the warehouse {warehouse}, whose files only the pipeline "
            "writes; choose another folder"
        )
    html_path, csv_path = out_dir / f"review-{sheet.sheet}.html", out_dir / f"review-{sheet.sheet}.csv"
    key_path = sheets_dir(data) / f"{sheet.sheet}.json"
    if not force and (html_path.exists() or csv_path.exists() or key_path.exists()):
        raise ReviewError(f"sheet {sheet.sheet} was already exported ({key_path}); pass --force to write it again")
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    from staffml_dagster.storage.atomic import write_atomic

    staging = Path(tempfile.mkdtemp(prefix=".review-", dir=out_dir))
    try:
        (staging / html_path.name).write_text(render_html(sheet), encoding="utf-8")
        (staging / csv_path.name).write_text(render_csv(sheet), encoding="utf-8")
        key = {
            "sheet": sheet.sheet,
            "items": sheet.key,
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_atomic(key_path, json.dumps(key, indent=2))
        os.replace(staging / html_path.name, html_path)
        os.replace(staging / csv_path.name, csv_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"html": html_path, "csv": csv_path, "key": key_path}


def load_key(path: Path) -> dict:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"no key for this sheet: {path} (was it exported on this machine? pass --key PATH)") from None
    except json.JSONDecodeError as exc:
        raise ReviewError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), dict) or not isinstance(raw.get("sheet"), str):
        raise ReviewError(f"{path}: not a review sheet key (expected {{sheet, items}})")
    return raw


# --------------------------------------------------------------------------- reading filled sheets


@dataclass
class RawRow:
    file: str
    row: str  # "row 3" (CSV, counting the header as row 1) or "scores[2]" (JSON)
    sheet: str | None
    values: dict


def _read_limited(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ReviewError(f"{path}: {size} bytes, over the {MAX_FILE_BYTES}-byte limit for a review file")
    return path.read_bytes()


def read_review_file(path: Path) -> tuple[list[RawRow], str | None]:
    """The rows of one filled sheet and the reviewer it names (JSON from the page: {sheet,
    reviewer, scores: [...]}; CSV: the exported columns). Raises ReviewError when the file as
    a whole cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"{path}: no such file")
    data = _read_limited(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReviewError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in ("sheet", "item", *CSV_SCORE_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewError(f"{path}: not a review sheet CSV, column(s) {', '.join(missing)} missing")
        rows = []
        for number, rec in enumerate(reader, 2):
            values = {c: (rec.get(c) or "").strip() for c in ("item", *CSV_SCORE_COLUMNS)}
            if not any(values[c] for c in CSV_SCORE_COLUMNS) and not any(
                (rec.get(f"reason_{c}") or "").strip() for c in CSV_SCORE_COLUMNS
            ):
                continue  # not scored
            values["reasons"] = {
                c: rec[f"reason_{c}"] for c in CSV_SCORE_COLUMNS if (rec.get(f"reason_{c}") or "").strip()
            }
            rows.append(RawRow(str(path), f"row {number}", (rec.get("sheet") or "").strip() or None, values))
        return rows, None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReviewError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("scores"), list):
        raise ReviewError(f"{path}: expected the saved review page, an object {{sheet, reviewer, scores: [...]}}")
    sheet = doc.get("sheet") if isinstance(doc.get("sheet"), str) else None
    reviewer = doc.get("reviewer") if isinstance(doc.get("reviewer"), str) and doc.get("reviewer").strip() else None
    rows = [
        RawRow(str(path), f"scores[{i}]", sheet, entry if isinstance(entry, dict) else {"__not_object__": True})
        for i, entry in enumerate(doc["scores"])
    ]
    return rows, reviewer.strip() if reviewer else None


def _score(value, allowed: tuple[int, ...]) -> int | None | str:
    """An int in ``allowed``, None when blank, or the string "bad"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return "bad"
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"[0-9](\.0+)?", value):  # a spreadsheet may write 1 as 1.0
            return "bad"
        value = int(float(value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value in allowed else "bad"


@dataclass
class ReviewImport:
    rows: pd.DataFrame
    errors: list[str]
    files: int


def validate_reviews(
    raw: list[RawRow],
    key: dict[str, dict],
    reviewer: str,
    round_: int,
    existing: pd.DataFrame | None = None,
    now: str | None = None,
) -> ReviewImport:
    """Clean review rows; one error per bad row naming its file and row, the rest kept.
    ``key`` maps sheet id -> loaded key. ``existing`` is the reviews table so far: an item this
    reviewer already has in this round is scored twice."""
    now = now or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    seen: dict[str, str] = {}
    if existing is not None and len(existing):
        mine = existing[(existing["reviewer"] == reviewer) & (existing["round"] == round_)]
        seen = {str(q): f"already imported from {f}" for q, f in zip(mine["question_id"], mine["file"])}
    rows, errors = [], []
    for r in raw:
        where = f"{r.file}: {r.row}"
        v = r.values
        if v.get("__not_object__"):
            errors.append(f"{where}: not an object")
            continue
        item = v.get("item")
        if not isinstance(item, str) or not ITEM_KEY_RE.fullmatch(item.strip()):
            errors.append(f"{where}: 'item' must be an item key from the sheet, got {str(item)[:40]!r}")
            continue
        item = item.strip()
        where = f"{where} (item {item})"
        if r.sheet is None or r.sheet not in key:
            errors.append(f"{where}: unknown sheet {r.sheet!r}" if r.sheet else f"{where}: no sheet id")
            continue
        entry = key[r.sheet]["items"].get(item)
        if entry is None:
            errors.append(f"{where}: unknown item, not on sheet {r.sheet}")
            continue
        problems, clean = [], {}
        for c in CSV_SCORE_COLUMNS:
            allowed = SMELL_VALUES if c == SMELL else (0, 1)
            s = _score(v.get(c), allowed)
            if s is None:
                problems.append(f"{c} missing")
            elif s == "bad":
                problems.append(
                    f"{c} must be {', '.join(map(str, allowed[:-1]))} or {allowed[-1]}, got {str(v.get(c))[:20]!r}"
                )
            else:
                clean[c] = s
        reasons = v.get("reasons") or {}
        if not isinstance(reasons, dict):
            problems.append("reasons must be an object {criterion: reason}")
            reasons = {}
        kept_reasons = {}
        for name, text in reasons.items():
            if name not in CSV_SCORE_COLUMNS:
                problems.append(f"reason for unknown criterion {str(name)[:30]!r}")
            elif not isinstance(text, str):
                problems.append(f"reason for {name} must be text")
            elif len(text) > MAX_REASON_CHARS:
                problems.append(f"reason for {name} is {len(text)} characters, over {MAX_REASON_CHARS}")
            elif text.strip():
                kept_reasons[name] = " ".join(text.split())
        for c in RUBRIC_CRITERIA:
            if clean.get(c) == 0 and c not in kept_reasons:
                problems.append(f"{c} is 0 without a reason (a one-line reason is required for every 0)")
        qid = entry["question_id"]
        if not problems and qid in seen:
            problems.append(f"reviewer {reviewer} scored this item twice in round {round_} ({seen[qid]})")
        if problems:
            errors.append(f"{where}: " + "; ".join(problems))
            continue
        seen[qid] = f"first at {r.file}: {r.row}"
        rows.append(
            {
                "question_id": qid,
                "reviewer": reviewer,
                "round": round_,
                "source": entry.get("source", "corpus"),
                "sheet": r.sheet,
                **clean,
                "reasons": json.dumps(kept_reasons, sort_keys=True, ensure_ascii=False),
                "file": Path(r.file).name,
                "imported_at": now,
            }
        )
    df = pd.DataFrame(rows, columns=REVIEW_COLUMNS)
    for c in CSV_SCORE_COLUMNS:
        df[c] = df[c].astype("int64")
    df["round"] = df["round"].astype("int64")
    return ReviewImport(df, errors, len({r.file for r in raw}))


def reviews_path(warehouse: Path) -> Path:
    return Path(warehouse) / REVIEWS_TABLE / "part.parquet"


def read_reviews(warehouse: Path) -> pd.DataFrame:
    path = reviews_path(warehouse)
    if not path.exists():
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    return pd.read_parquet(path)


def write_reviews(new: pd.DataFrame, warehouse: Path) -> Path:
    """Append ``new`` to the reviews table, keyed by (question_id, reviewer, round): the file
    is rewritten through a temp file and a rename, so a failure leaves the previous table."""
    from staffml_dagster.storage.parquet_io import write_parquet_atomic

    existing = read_reviews(warehouse)
    merged = pd.concat([existing, new], ignore_index=True) if len(existing) else new
    dup = merged.duplicated(["question_id", "reviewer", "round"], keep=False)
    if dup.any():
        raise ReviewError(
            "refusing to write duplicate (question_id, reviewer, round) rows: "
            f"{merged.loc[dup, 'question_id'].tolist()[:5]}"
        )
    path = reviews_path(warehouse)
    write_parquet_atomic(merged.sort_values(["round", "reviewer", "question_id"]).reset_index(drop=True), path)
    return path


def import_review_files(
    files: list[Path], reviewer: str, round_: int, data: Path, warehouse: Path, key_path: Path | None = None
) -> tuple[ReviewImport, Path | None]:
    """Read, validate and store filled sheets. File-level problems (unreadable, the wrong
    reviewer) are errors too and that file's rows are skipped; returns the import and the
    table's path (None when nothing was written)."""
    if not REVIEWER_RE.fullmatch(reviewer or ""):
        raise ReviewError(
            f"--reviewer {reviewer!r}: use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 1:
        raise ReviewError(f"--round must be a whole number from 1, got {round_!r}")
    raw: list[RawRow] = []
    errors: list[str] = []
    keys: dict[str, dict] = {}
    if key_path:
        k = load_key(key_path)
        keys[k["sheet"]] = k
    for f in files:
        try:
            rows, named = read_review_file(Path(f))
        except ReviewError as exc:
            errors.append(str(exc))
            continue
        if named and named != reviewer:
            errors.append(f"{f}: the sheet was saved by reviewer {named!r}, not --reviewer {reviewer!r}; file skipped")
            continue
        for r in rows:
            if r.sheet and r.sheet not in keys and SHEET_RE.fullmatch(r.sheet):
                path = sheets_dir(data) / f"{r.sheet}.json"
                if path.exists():
                    keys[r.sheet] = load_key(path)
        raw += rows
    # two imports at once must not drop each other's rows; with nothing read there is nothing to
    # store, and no lock file is left in the warehouse
    with _reviews_lock(warehouse) if raw else contextlib.nullcontext():
        result = validate_reviews(raw, keys, reviewer, round_, read_reviews(warehouse))
        result.errors[:0] = errors
        result.files = len(files)
        path = write_reviews(result.rows, warehouse) if len(result.rows) else None
    return result, path


@contextlib.contextmanager
def _reviews_lock(warehouse: Path):
    """An exclusive lock on the reviews table for a read-validate-write."""
    lock = Path(warehouse) / REVIEWS_TABLE / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _one_select(sql: str, where: str | None) -> None:
    """``--where`` is pasted into a SELECT: refuse one that closes it and adds statements of its
    own (``1=1); COPY (...) TO '<warehouse>/...'; --`` would overwrite the corpus)."""
    import duckdb

    from staffml_dagster.storage.sql_shell import READ_ONLY_TYPES, QueryRefused, check_statements

    try:
        check_statements(sql, READ_ONLY_TYPES)
        if len(duckdb.extract_statements(sql)) != 1:
            raise QueryRefused("it adds a statement of its own")
    except QueryRefused as exc:
        raise ReviewError(f"--where {where!r}: must be one condition over the corpus's columns; {exc}") from None


def select_corpus(con, where: str | None = None, ids: list[str] | None = None) -> pd.DataFrame:
    """The corpus rows to review: all of the ``corpus`` view, narrowed by a SQL condition over
    its columns and/or a list of ids (every id must exist)."""
    if "corpus" not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}:
        raise ReviewError("the warehouse has no corpus table yet; materialize it first (staffml run)")
    sql = "SELECT * FROM corpus" + (f" WHERE ({where})" if where else "")
    _one_select(sql, where)
    try:
        df = con.execute(sql).df()
    except Exception as exc:  # duckdb's own error types
        raise ReviewError(f"--where {where!r}: {exc}") from None
    if ids:
        unknown = sorted(set(ids) - set(df["id"].astype(str)))
        if unknown:
            raise ReviewError(f"--ids: not in the corpus{' selection' if where else ''}: {', '.join(unknown[:10])}")
        df = df[df["id"].astype(str).isin(ids)]
    if df.empty:
        raise ReviewError("the selection is empty")
    return df


def select_rejected(con, where: str | None = None) -> pd.DataFrame:
    """The questions the gate rejected (validated_questions, passed false), narrowed by the same
    SQL condition as the corpus selection."""
    if "validated_questions" not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}:
        raise ReviewError("the warehouse has no validated_questions yet; materialize them first (staffml run)")
    sql = "SELECT * FROM validated_questions WHERE NOT passed" + (f" AND ({where})" if where else "")
    _one_select(sql, where)
    try:
        return con.execute(sql).df()
    except Exception as exc:  # duckdb's own error types
        raise ReviewError(f"--where {where!r} on validated_questions: {exc}") from None


def export_review_sheet(
    out_dir: Path,
    data: Path,
    con,
    n: int | None,
    seed: int,
    where: str | None = None,
    ids: list[str] | None = None,
    calibration_n: int = 0,
    calibration_file: Path | None = None,
    shuffle: bool = True,
    force: bool = False,
    date: str | None = None,
    rejected_n: int = 0,
) -> tuple[Sheet, dict[str, Path]]:
    corpus = select_corpus(con, where, ids)
    rejected = select_rejected(con, where) if rejected_n > 0 else None
    calibration = read_calibration(calibration_file) if calibration_n > 0 and calibration_file else None
    if calibration_n > 0 and calibration is None:
        raise ReviewError("calibration items asked for without a calibration file")
    rows = draw_items(
        corpus,
        None if n is None else min(n, len(corpus)) if ids else n,
        seed,
        calibration,
        calibration_n,
        rejected,
        rejected_n,
    )
    sheet = build_sheet(rows, seed, shuffle=shuffle, date=date)
    return sheet, write_sheet(sheet, out_dir, data, force=force)
