"""Bad inputs thrown at the real entry points of a real warehouse, end to end.

Builds a small warehouse (``staffml run --partition "kv-cache-management|cloud"`` with the hashed
TF-IDF embedder into a temporary ``STAFFML_DATA_DIR``), or copies the one given with
``--data``, fingerprints every file under its ``warehouse/`` and ``reports/`` (sha256), then runs
each case as a ``staffml`` command in a child process of its own (``python -m
staffml_dagster.cli``, the function the ``staffml`` script calls):

* ``spec``: ``staffml run`` over a copy of specs/ (``STAFFML_SPECS_DIR``) with one defect each:
  a duplicate key, ``.inf``, a negative or zero batch, a unit of the wrong dimension, an unknown
  unit, an empty topics list, a non-UTF-8 file, malformed YAML, a missing file; and unknown
  partition keys;
* ``sql``: ``staffml sql`` attacks: COPY into the warehouse, ATTACH, INSTALL, LOAD, SET, DROP,
  CREATE, DELETE, EXPORT DATABASE, files outside the warehouse, ``--write-to`` the warehouse;
* ``import``: ``staffml import`` of one hostile file or bundle each (the inputs of
  tests/test_interchange.py's hostile-import test, one per folder), into the default
  ``<warehouse>/imported_corpus``;
* ``export``: ``staffml export --out`` the warehouse, a folder or file inside it, a link to it;
* ``review``: ``staffml review export --where`` that closes its SELECT or reads a file outside,
  ``--out`` inside the warehouse; ``staffml review import`` of a broken sheet, a bad reviewer name;
* ``audit``: ``staffml audit`` of garbage, into the default ``<data>/reports/audit``.

For each case it records the exit code, whether the error is clean (non-zero exit, no Python
traceback on stderr, stderr names what is wrong: the file, key or statement the case expects),
and whether any warehouse or report file changed, vanished or appeared (a temp file left
half-written counts as appeared), or a file the case plants outside (``marker``) was created.
After a case that changed anything the warehouse is restored from the pristine copy, so every
case starts from the same files.

    .venv/bin/python benchmarks/hostile/run.py      # writes benchmarks/hostile/results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SPECS = ROOT / "specs"
PARTITION = "kv-cache-management|cloud"
WATCHED = ("warehouse", "reports")  # the folders of STAFFML_DATA_DIR no bad input may change


@dataclass
class Case:
    name: str
    group: str
    argv: list[str]  # after `staffml`
    names: tuple[str, ...]  # what stderr must say (each fragment, case-insensitive): the file, key or reason
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None  # a raw command instead of `staffml argv` (the harness's own controls)
    marker: Path | None = None  # a file outside the data folder the input tries to create


# ------------------------------------------------------------------------------ fingerprints


def fingerprint(data: Path) -> dict[str, str]:
    """sha256 of every file (and the target of every link) under the watched folders of ``data``."""
    out = {}
    for top in WATCHED:
        base = data / top
        if not base.exists():
            continue
        for p in sorted(base.rglob("*")):
            rel = str(p.relative_to(data))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def is_temp(rel: str) -> bool:
    """A temp or staging file (``.x-pid-rand.parquet.tmp``, a hidden staging folder)."""
    return rel.endswith(".tmp") or any(part.startswith(".") for part in Path(rel).parts)


def diff(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    added = sorted(set(after) - set(before))
    return {
        "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
        "vanished": sorted(set(before) - set(after)),
        "half_written": [a for a in added if is_temp(a)],
        "added": [a for a in added if not is_temp(a)],
    }


# ------------------------------------------------------------------------------ running a case


def child_env(data: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "STAFFML_SPECS_DIR", "STAFFML_ASSETS_DIR")}
    env.update(STAFFML_DATA_DIR=str(data), STAFFML_EMBEDDER="tfidf", PYTHONPATH=str(ROOT), **extra)
    return env


def run_case(case: Case, data: Path, pristine: Path, reference: dict[str, str], timeout: float = 120) -> dict:
    """Run one case against ``data`` (which must match ``reference``), judge it, and restore
    ``data`` from ``pristine`` when the case changed anything."""
    cmd = case.command or [sys.executable, "-m", "staffml_dagster.cli", *case.argv]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=child_env(data, case.env),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, err = (
            None,
            f"timed out after {timeout:.0f} s\n" + (exc.stderr.decode(errors="replace") if exc.stderr else ""),
        )
    seconds = time.perf_counter() - started
    changes = diff(reference, fingerprint(data))
    stray = [str(case.marker)] if case.marker and case.marker.exists() else []
    missing = [n for n in case.names if n.lower() not in err.lower()]
    traceback = "Traceback (most recent call last)" in err
    clean = code not in (0, None) and not traceback and not missing
    lost = bool(changes["vanished"])
    corrupted = bool(changes["changed"] or changes["added"] or changes["half_written"] or stray)
    if lost or corrupted:
        restore(pristine, data)
    first = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("error: ")]
    return {
        "case": case.name,
        "group": case.group,
        "exit": code,
        "clean": clean,
        "traceback": traceback,
        "names_what_is_wrong": not missing,
        "missing_from_message": missing,
        "lost": lost,
        "corrupted": corrupted,
        **changes,
        "stray": stray,
        "message": (first[0] if first else "")[:300],
        "errors": [line[7:][:200] for line in err.splitlines() if line.startswith("error: ")][:3],
        "seconds": round(seconds, 2),
    }


def restore(pristine: Path, data: Path) -> None:
    for top in WATCHED:
        shutil.rmtree(data / top, ignore_errors=True)
        if (pristine / top).exists():
            shutil.copytree(pristine / top, data / top, symlinks=True)


def figures(results: list[dict]) -> dict:
    return {
        "tried": len(results),
        "handled_cleanly": sum(r["clean"] for r in results),
        "lost_or_corrupted": sum(r["lost"] or r["corrupted"] for r in results),
        "not_clean": [r["case"] for r in results if not r["clean"]],
        "lost_or_corrupted_cases": [r["case"] for r in results if r["lost"] or r["corrupted"]],
    }


def run_cases(cases: list[Case], pristine: Path, work: Path) -> list[dict]:
    """Copy ``pristine`` to ``work`` and run every case against it, one after the other."""
    restore(pristine, work)
    reference = fingerprint(pristine)
    return [run_case(case, work, pristine, reference) for case in cases]


def run_all(pristine: Path, tmp: Path, jobs: int) -> list[dict]:
    """Every case of :func:`all_cases`, split over ``jobs`` workers, each with its own copy of
    the warehouse and its own inputs (the cases name the worker's paths); results in case order."""
    from concurrent.futures import ThreadPoolExecutor

    slices = []
    for k in range(jobs):
        work, scratch = tmp / f"data-{k}", tmp / f"scratch-{k}"
        scratch.mkdir()
        restore(pristine, work)
        cases = all_cases(work, scratch)
        slices.append((cases[k::jobs], work))
    with ThreadPoolExecutor(jobs) as pool:
        done = list(pool.map(lambda s: run_cases(s[0], pristine, s[1]), slices))
    return [done[i % jobs][i // jobs] for i in range(sum(len(d) for d in done))]


# ------------------------------------------------------------------------------ the warehouse


def build_warehouse(data: Path) -> float:
    """A one-partition warehouse built by the real CLI; returns its build time in seconds."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "staffml_dagster.cli", "run", "--partition", PARTITION],
        cwd=ROOT,
        env=child_env(data, {}),
        capture_output=True,
        text=True,
        check=False,
    )
    if not (data / "warehouse" / "corpus" / "part.parquet").exists():
        raise SystemExit(f"could not build the warehouse (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ the cases


def _spec_copy(scratch: Path, name: str, file: str, breaks) -> dict[str, str]:
    target = scratch / "specs" / name
    shutil.copytree(SPECS, target)
    breaks(target / file)
    return {"STAFFML_SPECS_DIR": str(target)}


def _text_edit(old: str, new: str):
    def edit(path: Path) -> None:
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"{path.name} no longer holds {old!r}: update the case")
        path.write_text(text.replace(old, new, 1))

    return edit


def _yaml_edit(mutate):
    def edit(path: Path) -> None:
        data = yaml.safe_load(path.read_text())
        mutate(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    return edit


def _first(key: str, **update):
    return lambda d: d[key][0].update(**update)


def _nested(key: str, field_: str, **update):
    return lambda d: d[key][0][field_].update(**update)


SPEC_DEFECTS = {  # name: (file, how it breaks, what the message must name)
    "duplicate key": (
        "hardware.yaml",
        _text_edit("    memory_kind: HBM3\n", "    memory_kind: HBM3\n    memory_kind: DDR4\n"),
        ("hardware.yaml", "duplicate key 'memory_kind'"),
    ),
    "infinite bandwidth": (
        "hardware.yaml",
        _yaml_edit(_nested("platforms", "memory_bandwidth", value=float("inf"))),
        ("hardware.yaml", "memory_bandwidth", "finite"),
    ),
    "negative batch": (
        "tracks.yaml",
        _yaml_edit(_nested("tracks", "scale_points", batch=[-1, 8])),
        ("tracks.yaml", "batch"),
    ),
    "zero batch": (
        "tracks.yaml",
        _yaml_edit(_nested("tracks", "scale_points", batch=[0, 8])),
        ("tracks.yaml", "batch"),
    ),
    "wrong-dimension unit": (
        "hardware.yaml",
        _yaml_edit(_nested("platforms", "memory_bandwidth", unit="GB")),
        ("hardware.yaml", "memory_bandwidth", "'GB'"),
    ),
    "unknown unit": (
        "hardware.yaml",
        _yaml_edit(_nested("platforms", "memory_bandwidth", unit="TB/blink")),
        ("hardware.yaml", "memory_bandwidth", "TB/blink"),
    ),
    "empty topics": ("topics.yaml", _yaml_edit(lambda d: d.update(topics=[])), ("topics.yaml", "topics")),
    "not UTF-8": (
        "skills.yaml",
        lambda p: p.write_bytes(p.read_bytes() + "# na\u00efve\n".encode("latin-1")),
        ("skills.yaml", "UTF-8"),
    ),
    "malformed YAML": (
        "zones.yaml",
        lambda p: p.write_text(p.read_text() + "\nbroken: [an unclosed list\n"),
        ("zones.yaml", "line"),
    ),
    "missing file": ("tracks.yaml", lambda p: p.unlink(), ("tracks.yaml",)),
}


def spec_cases(scratch: Path) -> list[Case]:
    cases = []
    for name, (file, breaks, names) in SPEC_DEFECTS.items():
        env = _spec_copy(scratch, name.replace(" ", "-"), file, breaks)
        cases.append(Case(f"spec: {name}", "spec", ["run", "--partition", PARTITION], names, env))
    for key, names in [
        ("no-such-topic|cloud", ("no-such-topic",)),
        ("kv-cache-management|space", ("'space'",)),
        ("kv-cache-management", ("kv-cache-management", "<topic>|<track>")),
    ]:
        cases.append(
            Case(
                f"partition: {key}",
                "spec",
                ["run", "--partition", PARTITION, "--partition", key],
                ("--partition",) + names,
            )
        )
    env = _spec_copy(scratch, "audit-duplicate", *SPEC_DEFECTS["duplicate key"][:2])
    cases.append(
        Case(
            "spec: duplicate key, under audit",
            "spec",
            ["audit", str(SPECS.parent / "README.md")],
            ("hardware.yaml", "memory_kind"),
            env,
        )
    )
    return cases


def sql_cases(data: Path, scratch: Path) -> list[Case]:
    wh = data / "warehouse"
    outside = scratch / "sql-out"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "loose.parquet").write_bytes((wh / "corpus" / "part.parquet").read_bytes())
    attacks = [
        ("COPY over the corpus", f"COPY (SELECT * FROM corpus LIMIT 1) TO '{wh}/corpus/part.parquet'", ("COPY",)),
        (
            "COPY PARTITION_BY OVERWRITE questions",
            (
                f"COPY (SELECT * FROM questions LIMIT 1) TO '{wh}/questions' "
                "(FORMAT parquet, PARTITION_BY (topic, track), OVERWRITE)"
            ),
            ("COPY",),
        ),
        ("ATTACH a file in the warehouse", f"ATTACH '{wh}/evil.duckdb' AS evil", ("ATTACH",)),
        ("INSTALL httpfs", "INSTALL httpfs", ("INSTALL",)),
        ("LOAD an extension", "LOAD parquet", ("LOAD",)),
        ("SET external access", "SET enable_external_access = true", ("SET",)),
        ("DROP VIEW", "DROP VIEW corpus", ("DROP",)),
        ("CREATE TABLE", "CREATE TABLE t AS SELECT 1", ("CREATE",)),
        ("DELETE", "DELETE FROM corpus", ("DELETE",)),
        ("EXPORT DATABASE into the warehouse", f"EXPORT DATABASE '{wh}/dump'", ("EXPORT",)),
        ("COPY after a SELECT", f"SELECT 1; COPY (SELECT 1) TO '{wh}/x.csv'", ("COPY",)),
        ("read_csv /etc/passwd", "SELECT * FROM read_csv('/etc/passwd')", ("outside the warehouse", "/etc/passwd")),
        ("read_text /etc/passwd", "SELECT * FROM read_text('/etc/passwd')", ("outside the warehouse", "/etc/passwd")),
        (
            "read_text ../ out of the warehouse",
            f"SELECT * FROM read_text('{wh}/corpus/../../../../../../etc/passwd')",
            ("outside the warehouse",),
        ),
        (
            "read_parquet outside the warehouse",
            f"SELECT * FROM read_parquet('{outside}/loose.parquet')",
            ("outside the warehouse", "loose.parquet"),
        ),
        ("syntax error", "SELEC * FROM corpus", ("SELEC",)),
    ]
    cases = [Case(f"sql: {name}", "sql", ["sql", query], names) for name, query, names in attacks]
    cases.append(
        Case(
            "sql: --write-to the warehouse",
            "sql",
            ["sql", "--write-to", str(wh), f"COPY (SELECT * FROM corpus LIMIT 1) TO '{wh}/corpus/part.parquet'"],
            ("overlaps the warehouse",),
        )
    )
    cases.append(
        Case(
            "sql: --write-to outside, COPY into the warehouse",
            "sql",
            ["sql", "--write-to", str(outside), f"COPY (SELECT * FROM corpus LIMIT 1) TO '{wh}/corpus/part.parquet'"],
            ("outside",),
        )
    )
    return cases


def question(qid: str, **fields) -> dict:
    """An invented schema-1.0 question (the public field names, our own text)."""
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
            "realistic_solution": "40 GB minus 12 GB leaves 28 GB.",
            "common_mistake": "**The Pitfall:** Adding the weights to the memory, which gives 52 GB.",
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


def import_inputs(scratch: Path) -> list[tuple[str, str, object, tuple[str, ...]]]:
    """(case, file name, content or a callable that makes the file, what the message must name)."""

    def dump(record) -> str:
        return yaml.safe_dump(record, sort_keys=False)

    secret = scratch / "secret.yaml"
    secret.write_text(dump(question("cloud-9414")))
    return [
        (
            "oversize file",
            "oversize.yaml",
            dump(question("cloud-9403", scenario="x" * 1_100_000)),
            ("oversize.yaml", "above the limit"),
        ),
        (
            "deep nesting",
            "deep.yaml",
            dump(question("cloud-9404", nested=[[[[[[[[[[[["bottom"]]]]]]]]]]]])),
            ("deep.yaml", "nesting deeper"),
        ),
        ("python tag", "python-tag.yaml", None, ("python-tag.yaml", "is not allowed")),
        (
            "path traversal id",
            "traversal.yaml",
            dump(question("../../etc/passwd")),
            ("traversal.yaml", "not a valid question id"),
        ),
        (
            "malformed YAML",
            "malformed.yaml",
            "id: cloud-9407\nscenario: [an unclosed list\ntitle: x\n",
            ("malformed.yaml", "malformed YAML"),
        ),
        (
            "title not text",
            "wrong-title.yaml",
            dump(question("cloud-9408", title=["not", "text"])),
            ("wrong-title.yaml", "'title'"),
        ),
        (
            "details not a mapping",
            "wrong-details.yaml",
            dump(question("cloud-9409") | {"details": "just a sentence"}),
            ("wrong-details.yaml", "'details'"),
        ),
        (
            "number not a number",
            "wrong-number.yaml",
            dump(question("cloud-9410", answer_value="lots")),
            ("wrong-number.yaml", "'answer_value'"),
        ),
        (
            "alias bomb",
            "bomb.yaml",
            "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nid: cloud-9411\nscenario: s\n",
            ("bomb.yaml", "aliases"),
        ),
        ("no id", "no-id.yaml", dump({k: v for k, v in question("x").items() if k != "id"}), ("no-id.yaml", "'id'")),
        ("a list, not a question", "list.yaml", "- id: cloud-9412\n", ("list.yaml", "got list")),
        (
            "future schema",
            "future.yaml",
            dump(question("cloud-9413", schema_version="2.0")),
            ("future.yaml", "schema_version"),
        ),
        ("symlink out of the root", "escape.yaml", secret, ("escape.yaml", "outside the import root")),
        (
            "id ending in a newline",
            "b.jsonl",
            json.dumps(question("cloud-9521\n")) + "\n",
            ("b.jsonl:1", "not a valid question id"),
        ),
        (
            "NaN number",
            "b.jsonl",
            json.dumps(question("cloud-9522", answer_value=float("nan"))) + "\n",
            ("b.jsonl:1", "answer_value", "finite"),
        ),
        (
            "inf in details",
            "b.jsonl",
            json.dumps(question("cloud-9523", details={"bandwidth": float("inf")})) + "\n",
            ("b.jsonl:1", "bandwidth", "finite"),
        ),
        (
            "oversize bundle entry",
            "b.json",
            json.dumps([question("cloud-9511", scenario="y" * 1_100_000)]),
            ("b.json[0]", "above the limit"),
        ),
        ("binary garbage", "garbage.yaml", bytes(range(256)) * 8, ("garbage.yaml",)),
    ]


def import_cases(scratch: Path) -> list[Case]:
    cases = []
    for i, (name, file, content, names) in enumerate(import_inputs(scratch)):
        folder = scratch / "imports" / f"{i:02d}"
        folder.mkdir(parents=True)
        marker = None
        if file == "python-tag.yaml":
            marker = scratch / f"pwned-{i}"
            content = f"id: cloud-9405\nscenario: !!python/object/apply:os.system ['touch {marker}']\n"
        if isinstance(content, Path):
            os.symlink(content, folder / file)
        elif isinstance(content, bytes):
            (folder / file).write_bytes(content)
        else:
            (folder / file).write_text(content)
        cases.append(Case(f"import: {name}", "import", ["import", str(folder)], names, marker=marker))
    cases.append(
        Case(
            "import: a path that does not exist",
            "import",
            ["import", str(scratch / "no-such-corpus")],
            ("no-such-corpus",),
        )
    )
    return cases


def export_cases(data: Path, scratch: Path) -> list[Case]:
    wh = data / "warehouse"
    link = scratch / "link-to-warehouse"
    os.symlink(wh, link)
    blocker = scratch / "a-file"
    blocker.write_text("not a folder\n")
    return [
        Case("export: --out the warehouse", "export", ["export", "--out", str(wh)], ("inside the warehouse",)),
        Case(
            "export: --out the questions table",
            "export",
            ["export", "--out", str(wh / "questions")],
            ("inside the warehouse",),
        ),
        Case(
            "export: --out a file of the corpus",
            "export",
            ["export", "--out", str(wh / "corpus" / "part.parquet")],
            ("inside the warehouse",),
        ),
        Case(
            "export: --out a link to the warehouse", "export", ["export", "--out", str(link)], ("inside the warehouse",)
        ),
        Case("export: --out under a file", "export", ["export", "--out", str(blocker / "sub")], ("a-file",)),
    ]


def review_cases(data: Path, scratch: Path) -> list[Case]:
    wh = data / "warehouse"
    broken = scratch / "filled.json"
    broken.write_text('{"sheet": ')
    out = str(scratch / "sheet")
    return [
        Case(
            "review: --where closes the SELECT and COPYs",
            "review",
            [
                "review",
                "export",
                "--out",
                out,
                "--where",
                f"1=1); COPY (SELECT 1 AS x) TO '{wh}/corpus/part.parquet'; --",
            ],
            ("--where", "one condition"),
        ),
        Case(
            "review: --where reads /etc/passwd",
            "review",
            [
                "review",
                "export",
                "--out",
                out,
                "--where",
                "id IN (SELECT column0 FROM read_csv('/etc/passwd', header = false))",
            ],
            ("--where", "/etc/passwd"),
        ),
        Case(
            "review: --out the corpus table",
            "review",
            ["review", "export", "--out", str(wh / "corpus")],
            ("inside the warehouse",),
        ),
        Case(
            "review: import a broken JSON sheet",
            "review",
            ["review", "import", str(broken), "--round", "1", "--reviewer", "a"],
            ("filled.json", "not valid JSON"),
        ),
        Case(
            "review: a reviewer name with ../",
            "review",
            ["review", "import", str(broken), "--round", "1", "--reviewer", "../../x"],
            ("--reviewer", "../../x"),
        ),
    ]


def audit_cases(scratch: Path) -> list[Case]:
    folder = scratch / "audit"
    folder.mkdir()
    (folder / "garbage.bin").write_bytes(os.urandom(4096))
    (folder / "lines.jsonl").write_text('not json\n{"half": \n[1, 2\n')
    (folder / "empty").mkdir()
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("no questions here\n")
    (folder / "bomb.yaml").write_text("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nid: cloud-9411\nscenario: s\n")
    return [
        Case("audit: random bytes", "audit", ["audit", str(folder / "garbage.bin")], ("garbage.bin",)),
        Case("audit: JSONL of broken lines", "audit", ["audit", str(folder / "lines.jsonl")], ("lines.jsonl",)),
        Case("audit: an empty folder", "audit", ["audit", str(folder / "empty")], ("empty",)),
        Case("audit: a folder without questions", "audit", ["audit", str(folder / "notes")], ("notes",)),
        Case("audit: an alias bomb", "audit", ["audit", str(folder / "bomb.yaml")], ("bomb.yaml", "aliases")),
        Case(
            "audit: a path that does not exist",
            "audit",
            ["audit", str(folder / "no-such-file.jsonl")],
            ("no-such-file.jsonl",),
        ),
    ]


def all_cases(data: Path, scratch: Path) -> list[Case]:
    return (
        spec_cases(scratch)
        + sql_cases(data, scratch)
        + import_cases(scratch)
        + export_cases(data, scratch)
        + review_cases(data, scratch)
        + audit_cases(scratch)
    )


# ------------------------------------------------------------------------------ main


def table(results: list[dict]) -> str:
    lines = [f"{'case':<52} {'exit':>4}  clean  lost/corrupted  message"]
    for r in results:
        damage = ",".join(k for k in ("changed", "vanished", "added", "half_written", "stray") if r[k]) or "-"
        said = (r["errors"] or [r["message"]])[0][:90]
        lines.append(f"{r['case'][:52]:<52} {r['exit']!s:>4}  {'yes' if r['clean'] else 'NO':<5}  {damage:<14}  {said}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, help="an existing STAFFML_DATA_DIR to copy (default: build a one-partition warehouse)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument(
        "--jobs", type=int, default=2, help="cases run at once, each worker on its own warehouse copy (default 2)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="staffml-hostile-") as tmp:
        tmp = Path(tmp)
        pristine = tmp / "pristine"
        if args.data:
            restore(args.data, pristine)
            build_s = None
        else:
            build_s = build_warehouse(pristine)
        results = run_all(pristine, tmp, args.jobs)
        files = len(fingerprint(pristine))
    total = figures(results)
    print(table(results))
    print(
        f"\ntried {total['tried']}, handled cleanly {total['handled_cleanly']}, "
        f"lost or corrupted {total['lost_or_corrupted']} "
        f"({files} warehouse and report files fingerprinted; {time.perf_counter() - started:.0f} s)"
    )
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "partition": PARTITION,
        "files_fingerprinted": files,
        "warehouse_build_s": round(build_s, 1) if build_s else None,
        "seconds": round(time.perf_counter() - started, 1),
        "figures": total,
        "by_group": {
            g: figures([r for r in results if r["group"] == g]) for g in dict.fromkeys(r["group"] for r in results)
        },
        "cases": results,
    }
    args.out.write_text(json.dumps(out, indent=1).replace(str(tmp), "<tmp>") + "\n")  # the same on every run
    print(f"written: {args.out}")
    return 0 if total["handled_cleanly"] == total["tried"] and not total["lost_or_corrupted"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
