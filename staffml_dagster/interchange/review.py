"""Put an imported corpus through what generated questions go through: the criteria of
``quality/criteria.py``, dedup against the generated questions, and coverage of our cells.

* **Validation** is :func:`~staffml_dagster.quality.criteria.validate_questions`, with
  the imported texts embedded by the pipeline's embedder. A field that could not be
  mapped (e.g. track ``global``) fails *specificity* with the source value named.
* **Dedup** against the generated questions: *exact* when the normalised scenario +
  question + solution text equals a generated one (any cell); *near* when
  :func:`~staffml_dagster.quality.criteria.distinctness` — the same rule validation
  applies, with the generated questions of the cell placed first — rejects it. A
  duplicate fails *distinctness* and names the generated question.
* **Coverage**: how many imported questions land in each (topic, track), zone and level,
  and which of our applicable cells (the ``cells`` of the backward design) they fill.

Plain pandas and numpy; the ``imported_questions`` asset is a thin wrapper.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from staffml_dagster.embedding import Embedder
from staffml_dagster.quality.criteria import CRITERIA, distinct_text, distinctness, validate_questions
from staffml_dagster.specs import Specs

CELL_KEYS = ["topic", "track", "zone", "level"]
DEDUP_COLUMNS = ["duplicate_of", "duplicate_kind", "duplicate_similarity"]
_DUPLICATE_WORDING = {
    "exact": "same content as",
    "near": "near-duplicate (cosine {sim:.2f}) of",
    "same solution path": "same solution path and parameters as",
}
# what the dedup needs of a generated question
GENERATED_COLUMNS = ["id", *CELL_KEYS, "scenario", "question", "realistic_solution", "signature"]


def content_key(row: dict) -> str:
    """Exact-duplicate key: the distinctness text, lower-cased with whitespace collapsed."""
    return hashlib.sha256(" ".join(distinct_text(row).lower().split()).encode()).hexdigest()


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    df["failures"] = [[f"{c}: {r[f'{c}_reason']}" for c in CRITERIA if not r[f"{c}_ok"]] for r in df.to_dict("records")]
    df["passed"] = [not f for f in df["failures"]]
    return df


def _fail(df: pd.DataFrame, mask: pd.Series | np.ndarray, criterion: str, reasons: list[str]) -> None:
    positions = np.flatnonzero(np.asarray(mask))
    for pos, reason in zip(positions, reasons):
        before = df.iloc[pos][f"{criterion}_reason"]
        df.iat[pos, df.columns.get_loc(f"{criterion}_ok")] = False
        df.iat[pos, df.columns.get_loc(f"{criterion}_reason")] = f"{before}; {reason}" if before else reason


def duplicates_of_generated(
    imported: pd.DataFrame,
    generated: pd.DataFrame,
    threshold: float,
    imported_vectors: dict[str, np.ndarray],
    generated_vectors: dict[str, np.ndarray],
) -> pd.DataFrame:
    """For each imported question: the generated question it duplicates (``exact`` content
    or ``near`` by the distinctness rule of its cell), else None. One row per imported id."""
    out = pd.DataFrame(
        {"id": imported["id"].values, "duplicate_of": None, "duplicate_kind": None, "duplicate_similarity": np.nan}
    )
    if imported.empty or generated is None or generated.empty:
        return out
    exact = {}
    for row in generated.to_dict("records"):
        exact.setdefault(content_key(row), row["id"])
    gen_cells = {key: cell for key, cell in generated.groupby(CELL_KEYS, sort=False)}
    for pos, row in enumerate(imported.to_dict("records")):
        match = exact.get(content_key(row))
        if match is not None:
            out.iloc[pos, 1:] = [match, "exact", 1.0]
            continue
        key = tuple(row[k] for k in CELL_KEYS)
        cell = gen_cells.get(key)
        if cell is None or any(v is None for v in key):
            continue
        # the validation rule itself: generated questions first, then this one
        frame = pd.concat([cell, pd.DataFrame([row])[cell.columns.intersection(list(row))]], ignore_index=True)
        vectors = np.stack([generated_vectors[i] for i in cell["id"]] + [imported_vectors[row["id"]]])
        verdict = distinctness(frame, threshold, vectors=vectors)[-1]
        if verdict.passed:
            continue
        other = verdict.duplicate_of
        if other in generated_vectors:
            kind = "same solution path" if verdict.reason.startswith("same solution path") else "near"
            out.iloc[pos, 1:] = [other, kind, float(generated_vectors[other] @ imported_vectors[row["id"]])]
    return out


def review_imported(
    imported: pd.DataFrame,
    specs: Specs,
    embedder: Embedder,
    generated: pd.DataFrame | None = None,
    generated_vectors: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The imported rows with a verdict and a reason per criterion, ``failures``,
    ``passed`` and the dedup columns. ``generated_vectors`` (id -> stored embedding of the
    same model) are used where given; missing generated vectors are computed here."""
    if imported.empty:
        out = validate_questions(imported, specs)
        for column in DEDUP_COLUMNS:
            out[column] = pd.Series(dtype=object)
        return out
    imported = imported.reset_index(drop=True)
    vectors = dict(zip(imported["id"], embedder.encode([distinct_text(r) for r in imported.to_dict("records")])))
    filled = imported.copy()
    filled[CELL_KEYS] = filled[CELL_KEYS].fillna("")  # unmapped values still form a cell for distinctness
    out = validate_questions(filled, specs, vectors=vectors)
    out[CELL_KEYS] = imported[CELL_KEYS]
    has_unmapped = imported["unmapped"].map(lambda u: u is not None and len(u) > 0)
    _fail(
        out,
        has_unmapped,
        "specificity",
        [f"no counterpart in specs/ for {', '.join(u)}" for u in imported.loc[has_unmapped, "unmapped"]],
    )

    generated = generated if generated is not None else pd.DataFrame(columns=GENERATED_COLUMNS)
    if len(generated):
        wanted = set(map(tuple, imported[CELL_KEYS].dropna().values.tolist()))
        in_cells = generated[[tuple(k) in wanted for k in generated[CELL_KEYS].values.tolist()]]
        known = generated_vectors or {}
        missing = [i for i in in_cells["id"] if i not in known]
        if missing:
            rows = in_cells[in_cells["id"].isin(missing)].to_dict("records")
            known = {**known, **dict(zip(missing, embedder.encode([distinct_text(r) for r in rows])))}
        generated_vectors = known
    dups = duplicates_of_generated(
        imported, generated, specs.quality.similarity_threshold, vectors, generated_vectors or {}
    )
    for column in DEDUP_COLUMNS:
        out[column] = dups[column].values
    is_dup = out["duplicate_of"].notna()
    _fail(
        out,
        is_dup,
        "distinctness",
        [
            f"{_DUPLICATE_WORDING[r.duplicate_kind].format(sim=r.duplicate_similarity)} generated question "
            f"{r.duplicate_of}"
            for r in out[is_dup].itertuples()
        ],
    )
    return _finish(out)


@dataclass
class ImportCoverage:
    per_partition: pd.DataFrame  # topic, track, imported, passed
    per_zone: pd.DataFrame
    per_level: pd.DataFrame
    cells: pd.DataFrame  # our applicable cells that imported questions land in: imported, passed
    outside: pd.DataFrame  # mapped questions whose (topic, track, zone, level) is none of our cells
    stats: dict


def import_coverage(reviewed: pd.DataFrame, cells: pd.DataFrame) -> ImportCoverage:
    """Where the imported questions land among our cells (``cells`` as the cells asset:
    topic, track, zone, level of every applicable cell)."""

    def count(keys: list[str]) -> pd.DataFrame:
        rows = reviewed.dropna(subset=keys) if len(reviewed) else reviewed
        if rows.empty:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in keys}).assign(
                imported=pd.Series(dtype=int), passed=pd.Series(dtype=int)
            )
        counted = rows.groupby(keys).agg(imported=("id", "size"), passed=("passed", "sum")).reset_index()
        return counted.sort_values(["imported", *keys], ascending=[False] + [True] * len(keys), ignore_index=True)

    ours = cells[CELL_KEYS].drop_duplicates()
    landed = count(CELL_KEYS)
    in_cells = ours.merge(landed, on=CELL_KEYS, how="inner")
    outside = landed.merge(ours, on=CELL_KEYS, how="left", indicator=True)
    outside = outside[outside["_merge"] == "left_only"].drop(columns="_merge").reset_index(drop=True)
    per_partition = count(["topic", "track"])
    stats = {
        "imported": len(reviewed),
        "passed": int(reviewed["passed"].sum()) if len(reviewed) else 0,
        "fully_classified": int(landed["imported"].sum()),
        "our_cells": len(ours),
        "cells_filled": len(in_cells),
        "cells_filled_by_passing": int((in_cells["passed"] > 0).sum()),
        "questions_outside_our_cells": int(outside["imported"].sum()),
        "partitions_touched": len(per_partition),
    }
    return ImportCoverage(per_partition, count(["zone"]), count(["level"]), in_cells, outside, stats)
