"""Draw a blind-review sample: corpus questions mixed with published StaffML calibration items
and, optionally, questions the gate rejected.

Implements steps 1-2 of the protocol in ../shared/docs/REVIEW_RUBRIC.md. Writes, into a new
folder:

- ``items.md``  what the reviewer sees: every item rendered the same way, shuffled, with no
  id, item model, backend, signature, source or provenance annotation;
- ``key.json``  item number -> source ("corpus" | "staffml" | "rejected"), id and, for corpus
  and rejected rows, the gate verdicts (every ``*_ok`` column and ``passed``); rejected rows
  also carry the gate's ``failures``. NEVER give it to the reviewer;
- ``README.md`` seed, date, counts, how to score.

``--rejected K`` mixes in K rows of ``<warehouse>/validated_questions`` whose ``passed`` is
false, rendered exactly like corpus items, so that score.py can show whether the gate rejects
what the reviewer rejects (with corpus items only, every item passed the gate).

    .venv/bin/python benchmarks/reviews/sample.py --seed 7
    .venv/bin/python benchmarks/reviews/sample.py --seed 7 --n 30 --calibration 10 --rejected 10 \\
        --warehouse data/warehouse --out benchmarks/reviews/2025-01-01-seed7

Pandas, duckdb, the standard library and the house style of staffml_dagster/quality/review_text.py.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import sys
from pathlib import Path

import duckdb
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script: this checkout's package, not another install
    sys.path.insert(0, str(REPO_ROOT))

from staffml_dagster.quality.review_text import (  # noqa: E402,F401  (re-exported: the house style lives in the package)
    LABELS,
    META_FIELDS,
    PROVENANCE_PREFIXES,
    SECTIONS,
    _conclusion_line,
    _dedent_sections,
    _inline,
    _join_conclusion,
    _label,
    _strip_provenance,
    normalise_text,
)

REVIEWS_DIR = Path(__file__).resolve().parent
DEFAULT_CALIBRATION = REPO_ROOT.parent / "shared" / "reference" / "staffml_questions_sample.jsonl"
PREFERRED_TRACKS = ("cloud", "edge", "mobile", "tinyml")

REQUIRED = tuple(f for f, _ in META_FIELDS) + tuple(f for f, _ in SECTIONS)


class SampleError(RuntimeError):
    """A sample cannot be drawn as asked (missing input, too few rows, reused seed)."""


# --------------------------------------------------------------------------- reading


def default_warehouse() -> Path:
    data = os.environ.get("STAFFML_DATA_DIR")
    return Path(data) / "warehouse" if data else REPO_ROOT / "data" / "warehouse"


def read_corpus(warehouse: Path) -> pd.DataFrame:
    """The validated corpus: ``<warehouse>/corpus/**/*.parquet`` (hive partitions) or a single
    ``<warehouse>/corpus/part.parquet``. Sorted by id so that a seed always draws the same rows.
    When the corpus carries no gate verdicts (the corpus asset drops them), the ``*_ok`` and
    ``passed`` columns of ``<warehouse>/validated_questions`` are joined on id where present."""
    root = Path(warehouse) / "corpus"
    files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith(".")) if root.is_dir() else []
    if not files:
        raise SampleError(
            f"no corpus in {root}: expected {root}/**/*.parquet (run the pipeline first, or pass --warehouse)"
        )
    df = _read_parquet(files)
    if "id" in df.columns:
        df = df.sort_values("id", kind="stable").reset_index(drop=True)
    if not gate_columns(df):
        df = _join_verdicts(df, Path(warehouse) / "validated_questions")
    return df


def _read_parquet(files: list[Path]) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        return con.execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = true, union_by_name = true)",
            [[str(f) for f in files]],
        ).df()
    finally:
        con.close()


def _join_verdicts(df: pd.DataFrame, validated_root: Path) -> pd.DataFrame:
    if "id" not in df.columns or not validated_root.is_dir():
        return df
    files = sorted(p for p in validated_root.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        return df
    verdicts = _read_parquet(files)
    cols = gate_columns(verdicts)
    if "id" not in verdicts.columns or not cols:
        return df
    verdicts = verdicts[["id", *cols]].drop_duplicates("id")
    return df.merge(verdicts, on="id", how="left")


def read_rejected(warehouse: Path) -> pd.DataFrame:
    """The rows the gate rejected: ``<warehouse>/validated_questions/**/*.parquet`` whose
    ``passed`` is false (a null ``passed`` is not a rejection). Sorted by id so that a seed
    always draws the same rows."""
    root = Path(warehouse) / "validated_questions"
    files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith(".")) if root.is_dir() else []
    if not files:
        raise SampleError(
            f"no validated questions in {root}: expected {root}/**/*.parquet for --rejected (run the pipeline first, "
            "or pass --warehouse)"
        )
    df = _read_parquet(files)
    if "passed" not in df.columns:
        raise SampleError(f"{root} has no 'passed' column: cannot tell which rows the gate rejected")
    rejected = df[pd.Series([_bool(v) is False for v in df["passed"]], index=df.index, dtype=bool)]
    if "id" in rejected.columns:
        rejected = rejected.sort_values("id", kind="stable")
    return rejected.reset_index(drop=True)


def gate_columns(df: pd.DataFrame) -> list[str]:
    """The gate's verdict columns: every ``*_ok`` column, then ``passed``."""
    cols = [c for c in df.columns if str(c).endswith("_ok")]
    return cols + (["passed"] if "passed" in df.columns else [])


def read_calibration(path: Path) -> pd.DataFrame:
    """The published StaffML rows, sorted by id (the package's reader, with this script's hint)."""
    from staffml_dagster.quality.review_rounds import ReviewError
    from staffml_dagster.quality.review_rounds import read_calibration as read_rows

    try:
        df = read_rows(path)
    except ReviewError as exc:
        hint = (
            " (the published StaffML sample; pass --calibration-file PATH, "
            "or --calibration 0 to review without calibration items)"
        )
        raise SampleError(
            str(exc).replace("calibration file not found", "calibration set not found")
            + (hint if "not found" in str(exc) else "")
        ) from exc
    if "id" in df.columns:
        df = df.sort_values("id", kind="stable").reset_index(drop=True)
    return df


# --------------------------------------------------------------------------- drawing


def draw_corpus(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` random rows, never two with the same (non-empty) ``signature``."""
    _check_fields(df, "corpus")
    shuffled = df.sample(frac=1.0, random_state=seed)
    if "signature" in shuffled.columns:
        sig = shuffled["signature"]
        blank = sig.isna() | (sig.astype(str).str.strip() == "")
        shuffled = shuffled[blank | ~sig.where(~blank).duplicated(keep="first")]
    if len(shuffled) < n:
        raise SampleError(f"the corpus has {len(shuffled)} rows with distinct signatures; asked for --n {n}")
    return shuffled.head(n).reset_index(drop=True)


def draw_rejected(
    df: pd.DataFrame, k: int, seed: int, drawn: pd.DataFrame | None = None, source: str = "validated_questions"
) -> pd.DataFrame:
    """``k`` random rejected rows, never two with the same (non-empty) ``signature`` and none
    sharing an id or signature with the ``drawn`` corpus rows (a near-twin of another item
    would stand out). Raises SampleError saying how many rejected rows exist."""
    if k <= 0:
        return df.head(0)
    _check_fields(df, "rejected set")
    shuffled = df.sample(frac=1.0, random_state=seed)
    distinct = shuffled
    if "signature" in distinct.columns:
        sig = distinct["signature"]
        blank = sig.isna() | (sig.astype(str).str.strip() == "")
        distinct = distinct[blank | ~sig.where(~blank).duplicated(keep="first")]
    usable = distinct
    if drawn is not None and len(drawn):
        if "id" in usable.columns and "id" in drawn.columns:
            usable = usable[~usable["id"].isin(set(drawn["id"].dropna()))]
        if "signature" in usable.columns and "signature" in drawn.columns:
            taken = {str(s) for s in drawn["signature"].dropna() if str(s).strip()}
            usable = usable[~usable["signature"].astype(str).isin(taken) | usable["signature"].isna()]
    if len(usable) < k:
        raise SampleError(
            f"asked for --rejected {k}, but {source} holds only {len(df)} rejected row(s) (passed false): "
            f"{len(distinct)} with distinct signatures, {len(usable)} not sharing an id or signature with the drawn "
            "corpus items"
        )
    return usable.head(k).reset_index(drop=True)


def draw_calibration(df: pd.DataFrame, k: int, seed: int, prefer_zones: set[str] | None = None) -> pd.DataFrame:
    """``k`` random published rows, preferring tracks cloud/edge/mobile/tinyml and, among
    them, zones the corpus also has (a zone only one source uses would give it away)."""
    if k <= 0:
        return df.head(0)
    _check_fields(df, "calibration set")
    track_ok = df["track"].isin(PREFERRED_TRACKS)
    zone_ok = df["zone"].isin(prefer_zones) if prefer_zones else pd.Series(True, index=df.index)
    tiers = [df[track_ok & zone_ok], df[track_ok & ~zone_ok], df[~track_ok]]
    picked: list[pd.DataFrame] = []
    need = k
    for tier in tiers:
        if need <= 0:
            break
        take = tier.sample(n=min(need, len(tier)), random_state=seed)
        picked.append(take)
        need -= len(take)
    if need > 0:
        raise SampleError(f"the calibration set has {len(df)} rows; asked for --calibration {k}")
    return pd.concat(picked).reset_index(drop=True)


def _check_fields(df: pd.DataFrame, what: str) -> None:
    missing = [f for f in REQUIRED if f not in df.columns]
    if missing:
        raise SampleError(f"the {what} lacks column(s) {', '.join(missing)}")


# --------------------------------------------------------------------------- rendering


def render_item(number: int, row: dict) -> str:
    parts = [f"## Item {number}", ""]
    for field, name in META_FIELDS:
        parts.append(f"- {name}: {normalise_text(row.get(field), field)}")
    for field, name in SECTIONS:
        parts += ["", f"### {name}", "", normalise_text(row.get(field), field)]
    return "\n".join(parts).rstrip() + "\n"


def build_review(
    corpus_rows: pd.DataFrame, calibration_rows: pd.DataFrame, seed: int, rejected_rows: pd.DataFrame | None = None
) -> tuple[str, dict]:
    """(items.md text, key) for the drawn rows, shuffled with ``seed``. Rejected rows are
    rendered exactly like corpus rows; only the key tells them apart."""
    gates = {"corpus": gate_columns(corpus_rows)}
    pool: list[tuple[str, dict]] = [("corpus", r) for r in corpus_rows.to_dict("records")]
    pool += [("staffml", r) for r in calibration_rows.to_dict("records")]
    if rejected_rows is not None and len(rejected_rows):
        gates["rejected"] = gate_columns(rejected_rows)
        pool += [("rejected", r) for r in rejected_rows.to_dict("records")]
    random.Random(seed).shuffle(pool)
    blocks, key = [], {}
    for number, (source, row) in enumerate(pool, 1):
        blocks.append(render_item(number, row))
        entry: dict = {"source": source, "id": _plain(row.get("id"))}
        if source in gates:
            for col in gates[source]:
                entry[col] = _bool(row.get(col))
            if source == "rejected":
                entry["failures"] = _strings(row.get("failures"))
            for extra in ("item_model", "backend"):
                if extra in row and _plain(row[extra]) is not None:
                    entry[extra] = _plain(row[extra])
        key[str(number)] = entry
    header = (
        "# Review items\n\n"
        f"{len(pool)} items. Score each one with the rubric (REVIEW_RUBRIC.md): the seven criteria 0/1 "
        "with a one-line reason for every 0, and template_smell 0-2. Recompute the napkin math and check "
        "every hardware figure you know. Write scores.json next to this file: a JSON list with one object "
        "per item, e.g.\n\n"
        "```json\n"
        '[{"item": 1, "topic_fit": 1, "zone_fit": 0, "grounding": 1, "math_correct": 1, "mistake_real": 1,\n'
        '  "coherent": 1, "staff_worthy": 0, "template_smell": 1,\n'
        '  "reasons": {"zone_fit": "one formula at L6+", "staff_worthy": "too easy for the level"}}]\n'
        "```\n"
    )
    return header + "\n" + "\n".join(blocks), key


def _plain(value):
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _strings(value) -> list[str]:
    """The gate's ``failures`` as a list of strings (parquet lists arrive as numpy arrays;
    a JSON-encoded list or a single string is accepted too)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return [str(v) for v in parsed if v is not None]
        return [text] if text else []
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and not (pd.api.types.is_scalar(v) and pd.isna(v))]
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return []
    return [str(value)]


def _bool(value):
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


# --------------------------------------------------------------------------- writing


def seed_used(reviews_dir: Path, seed: int, out: Path) -> list[Path]:
    """Earlier review folders drawn with ``seed`` (named ``<date>-seed<N>``)."""
    if not reviews_dir.is_dir():
        return []
    return [p for p in sorted(reviews_dir.glob(f"*-seed{seed}")) if p.is_dir() and p.resolve() != out.resolve()]


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_review(out: Path, items_md: str, key: dict, readme: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "items.md").write_text(items_md, encoding="utf-8")
    (out / "key.json").write_text(json.dumps(key, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme, encoding="utf-8")


def readme_text(
    seed: int,
    date: str,
    n_corpus: int,
    n_calibration: int,
    warehouse: Path,
    calibration: Path | None,
    out: Path,
    n_rejected: int = 0,
) -> str:
    rejected = f", {n_rejected} rejected by the gate" if n_rejected else ""
    return (
        f"# Blind review, seed {seed}\n\n"
        f"- drawn: {date}\n"
        f"- seed: {seed}\n"
        f"- items: {n_corpus + n_calibration + n_rejected} ({n_corpus} from the corpus, "
        f"{n_calibration} published StaffML calibration items{rejected})\n"
        f"- corpus: {warehouse}/corpus\n"
        + (f"- rejected: {warehouse}/validated_questions (passed false)\n" if n_rejected else "")
        + f"- calibration: {calibration if calibration else 'none'}\n\n"
        "Give the reviewer `items.md` and `REVIEW_RUBRIC.md` only - never `key.json` or this file.\n"
        "The reviewer writes `scores.json` here; then run\n\n"
        f"    .venv/bin/python benchmarks/reviews/score.py {_display(out)}\n\n"
        "## Findings\n\n(after scoring: recurring defect patterns with examples, what changed since the last review)\n"
    )


def sample(
    seed: int,
    n: int = 30,
    calibration: int = 10,
    warehouse: Path | None = None,
    out: Path | None = None,
    calibration_file: Path | None = DEFAULT_CALIBRATION,
    date: str | None = None,
    force: bool = False,
    rejected: int = 0,
    areas: list[str] | None = None,
) -> Path:
    """Draw, render and write one review folder; returns its path. ``areas`` limits the corpus
    (and rejected) items to those competency areas (the per-area reviews)."""
    date = date or _dt.date.today().isoformat()
    warehouse = Path(warehouse) if warehouse else default_warehouse()
    out = Path(out) if out else REVIEWS_DIR / f"{date}-seed{seed}"
    if not force:
        if (out / "items.md").exists() or (out / "key.json").exists():
            raise SampleError(f"{out} already holds a review; choose another --out or pass --force")
        used = seed_used(out.parent, seed, out)
        if used:
            raise SampleError(
                f"seed {seed} was already used ({', '.join(str(p) for p in used)}); the protocol asks for a new seed "
                "(or pass --force)"
            )
    if rejected < 0:
        raise SampleError(f"--rejected must be 0 or more, got {rejected}")
    corpus = read_corpus(warehouse)
    if areas:
        unknown = sorted(set(areas) - set(corpus["competency_area"].astype(str)))
        if unknown:
            raise SampleError(f"--areas {', '.join(unknown)}: no corpus question has that competency area")
        corpus = corpus[corpus["competency_area"].isin(areas)]
    drawn = draw_corpus(corpus, n, seed)
    rej_rows = pd.DataFrame()
    if rejected > 0:
        rej_all = read_rejected(warehouse)
        rej_rows = draw_rejected(
            rej_all[rej_all["competency_area"].isin(areas)] if areas else rej_all,
            rejected,
            seed,
            drawn,
            f"{warehouse}/validated_questions",
        )
    cal_rows = pd.DataFrame()
    if calibration > 0:
        if calibration_file is None:
            raise SampleError("no calibration file given; pass --calibration-file PATH or --calibration 0")
        cal_rows = draw_calibration(
            read_calibration(calibration_file), calibration, seed, set(corpus["zone"].dropna().astype(str))
        )
    items_md, key = build_review(drawn, cal_rows, seed, rej_rows)
    write_review(
        out,
        items_md,
        key,
        readme_text(
            seed,
            date,
            len(drawn),
            len(cal_rows),
            warehouse,
            calibration_file if calibration > 0 else None,
            out,
            n_rejected=len(rej_rows),
        ),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True, help="a seed not used by an earlier review")
    ap.add_argument("--n", type=int, default=30, help="corpus items (default 30)")
    ap.add_argument(
        "--calibration", type=int, default=10, help="published StaffML calibration items (default 10; 0 for none)"
    )
    ap.add_argument(
        "--rejected",
        type=int,
        default=0,
        help="rows the gate rejected (validated_questions, passed false), rendered like corpus items (default 0)",
    )
    ap.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        help="warehouse folder (default: $STAFFML_DATA_DIR/warehouse or data/warehouse)",
    )
    ap.add_argument(
        "--calibration-file",
        type=Path,
        default=DEFAULT_CALIBRATION,
        help=f"published StaffML rows, JSONL (default {DEFAULT_CALIBRATION})",
    )
    ap.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/reviews/<date>-seed<N>/)")
    ap.add_argument("--force", action="store_true", help="allow a reused seed or overwriting --out")
    ap.add_argument(
        "--areas", default=None, help="comma-separated competency areas to draw corpus items from (default: all)"
    )
    args = ap.parse_args(argv)
    try:
        out = sample(
            args.seed,
            args.n,
            args.calibration,
            args.warehouse,
            args.out,
            args.calibration_file,
            force=args.force,
            rejected=args.rejected,
            areas=[a.strip() for a in args.areas.split(",")] if args.areas else None,
        )
    except SampleError as exc:
        print(f"sample.py: error: {exc}", file=sys.stderr)
        return 2
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    n_cal = sum(1 for e in key.values() if e["source"] == "staffml")
    n_rej = sum(1 for e in key.values() if e["source"] == "rejected")
    rej = f", {n_rej} rejected" if n_rej else ""
    print(
        f"wrote {out}/items.md ({len(key)} items: {len(key) - n_cal - n_rej} corpus, {n_cal} calibration{rej}), "
        "key.json, README.md"
    )
    print("give the reviewer items.md and REVIEW_RUBRIC.md only; never key.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
