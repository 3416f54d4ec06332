"""`staffml`: run the pipeline offline, query the warehouse, print a report, import, export and audit StaffML
corpora, export and import blind review sheets."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import pandas as pd


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def run_pipeline(partitions: list[str] | None = None, backend: str | None = None, quiet: bool = False) -> dict:
    """Materialize the whole graph: every partition in one Dagster run (the `everything` job over
    the full partition range), or, for the given partitions, the design stages, those
    partitions' questions and validation, and the corpus."""
    from staffml_dagster.definitions import defs
    from staffml_dagster.partitions import topic_track
    from staffml_dagster.runs import execute_job_run, owner_tags, reclaim_dead_runs, watching_run

    instance = _instance()
    for gone in reclaim_dead_runs(instance):
        print(
            f"reclaimed run {gone.run_id}: its process is gone; was {gone.status}, now failed, {gone.slots} pool "
            "slot(s) freed",
            flush=True,
        )
    from staffml_dagster.paths import warehouse_dir
    from staffml_dagster.storage.atomic import remove_orphan_temps

    orphans = remove_orphan_temps(warehouse_dir())
    if orphans:
        print(f"removed {len(orphans)} temp file(s) of killed writes from the warehouse", flush=True)
    quiet_logs = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    run_config = {**quiet_logs, **({"resources": {"generator": {"config": {"backend": backend}}}} if backend else {})}
    owner = owner_tags()
    current: dict[str, str | None] = {"run_id": None}

    def say(message: str) -> None:  # progress, pool waits and signals, as the run's log has them
        print(f"  {message}", flush=True)

    with watching_run(instance, lambda: current["run_id"], "anthropic", say) as watch:

        def launch(job_name: str, run_config: dict, tags: dict[str, str] | None = None):
            if watch.stopped_by:
                raise RunStopped(watch.stopped_by, current["run_id"], watch.stopped_waiting)
            current["run_id"] = str(uuid.uuid4())
            watch.runs.append(current["run_id"])
            result = execute_job_run(
                instance,
                job_name,
                defs=defs,
                run_id=current["run_id"],
                run_config=run_config,
                tags={**owner, **(tags or {})},
            )
            if watch.stopped_by:
                raise RunStopped(watch.stopped_by, current["run_id"], watch.stopped_waiting)
            return result

        started = time.perf_counter()
        if not partitions:
            keys = topic_track.get_partition_keys()
            tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
            result = launch("everything", run_config, tags)
            failures = _failed_steps(result)
            corpus = result
        else:
            keys = partitions
            design = launch("design_stages", quiet_logs)
            if not design.success:
                raise SystemExit(
                    f"design stages failed at {_failed_steps(design)}; see the Dagster UI (make ui) for the error"
                )
            failures = []
            questions_job = defs.resolve_job_def("questions_job")
            for i, key in enumerate(keys, 1):
                if not launch(
                    "questions_job",
                    run_config,
                    dict(questions_job.get_tags_for_partition_key(key, selected_asset_keys=None)),
                ).success:
                    failures.append(key)
                if not quiet and (i % 25 == 0 or i == len(keys)):
                    print(f"  questions: {i}/{len(keys)} partitions", flush=True)
            corpus = launch("corpus_job", quiet_logs)
    checks = [c for c in corpus.get_asset_check_evaluations() if not c.passed and c.asset_key.path[-1] == "corpus"]
    corpus_ok = not checks and corpus.is_node_success("coverage_report")
    return {
        "partitions": len(keys),
        "failed": failures,
        "seconds": time.perf_counter() - started,
        "corpus_ok": corpus_ok,
        "failed_checks": [f"{c.check_name}: {c.description or ''}" for c in checks],
    }


class RunStopped(Exception):
    """SIGTERM or SIGINT stopped a run of `staffml run`; no further run is launched."""

    def __init__(self, signum: int, run_id: str | None, while_waiting: bool):
        import signal

        self.signum, self.run_id, self.while_waiting = signum, run_id, while_waiting
        where = (
            "while it waited for a pool slot (it wrote nothing)" if while_waiting else "at the step it was executing"
        )
        super().__init__(f"{signal.Signals(signum).name}: run {run_id} stopped {where}; no further run launched")


def check_run_inputs(partitions: list[str]) -> str | None:
    """Everything a run reads before it writes: specs/, the item models and the partition keys.
    Returns what is wrong (file and key named), or None, so a bad input stops the run before
    any asset is materialized."""
    from staffml_dagster.core.item_model import ItemModelError, check_item_models
    from staffml_dagster.specs import SpecError, cached_specs

    try:
        specs = cached_specs()
    except SpecError as exc:
        return f"bad spec: {exc}"
    try:
        check_item_models(specs)
    except ItemModelError as exc:
        return f"bad item model: {exc}"
    from staffml_dagster.partitions import check_partition_keys

    try:
        check_partition_keys(partitions, specs)
    except ValueError as exc:
        return f"bad --partition: {exc}"
    return None


def _default_calibration():
    from staffml_dagster.paths import PROJECT_ROOT

    return PROJECT_ROOT.parent / "shared" / "reference" / "staffml_questions_sample.jsonl"


def _failed_steps(result) -> list[str]:
    """Steps that failed, leaving out blocking asset checks: those are reported as checks."""

    def check_failure(event) -> bool:
        error = getattr(event.event_specific_data, "error", None)
        return error is not None and error.cls_name == "DagsterAssetCheckFailedError"

    return [e.step_key for e in result.all_events if e.is_step_failure and not check_failure(e)]


def summary(con=None) -> str:
    from staffml_dagster.storage import connect_warehouse

    con = con or connect_warehouse()
    q = con.execute("SELECT topic, track, zone, level FROM questions").df()
    from staffml_dagster.partitions import applicable_pairs
    from staffml_dagster.quality.coverage import cv, questions_per_topic

    matrix = con.execute("SELECT topic, track, applicable FROM applicability_matrix").df()
    pairs = applicable_pairs(matrix)
    per_topic = questions_per_topic(q, matrix)
    per_partition = q.groupby(["topic", "track"]).size()
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    corpus = int(con.execute("SELECT count(*) FROM corpus").fetchone()[0]) if "corpus" in tables else 0
    lines = [
        f"questions: {len(q)} in {per_partition.size} partitions ({len(pairs)} applicable of {len(matrix)})",
        f"per track: {q.groupby('track').size().to_dict()}",
        f"smallest partition: {int(per_partition.min()) if len(per_partition) else 0}; zones per track: "
        f"{q.groupby('track')['zone'].nunique().to_dict()}; levels per track: "
        f"{q.groupby('track')['level'].nunique().to_dict()}",
        f"sigma/mu of per-topic counts: {cv(per_topic):.3f}" if len(per_topic) else "no topics",
        f"validated corpus: {corpus} questions passed every criterion",
    ]
    from staffml_dagster.core.item_model import models_for_topic

    unserved = sorted(f"{t}|{k}" for t, k in pairs if not models_for_topic(t, k))
    if unserved:
        lines.append(
            f"partitions without a native item model: {len(unserved)} of {len(pairs)} applicable; they stay empty "
            f"until an item model computes their topic's own mechanism (e.g. {', '.join(unserved[:3])})"
        )
    if "cell_capacity" in tables:
        from staffml_dagster.quality.coverage import METHOD_ESTIMATE, SATURATED

        reasons = ", ".join(f"'{r}'" for r in sorted(SATURATED))
        measured = con.execute(
            "SELECT count(*), sum(capacity), "
            f"avg(CASE WHEN stop_reason IN ({reasons}) THEN 1.0 ELSE 0.0 END) FROM cell_capacity"
        ).fetchone()
        if measured[0]:
            lines.append(
                f"measured capacity: {int(measured[1])} distinct questions over {measured[0]} cells, {measured[2]:.0%} "
                f"saturated (the StaffML method estimates {METHOD_ESTIMATE}; ours counts one question per distinct "
                "reasoning)"
            )
    if {"corpus", "cells"} <= tables:
        from staffml_dagster.quality.coverage import COVERAGE_SQL

        if "coverage_report" in tables:  # the coverage asset's own fill, against the measured capacity
            done = con.execute(
                "SELECT avg(CASE WHEN at_target THEN 1.0 ELSE 0.0 END), sum(CASE WHEN overfilled THEN 1 ELSE 0 END) "
                "FROM coverage_report"
            ).fetchone()
        else:
            done = con.execute(COVERAGE_SQL["completeness"]).fetchone()
        balance = con.execute(COVERAGE_SQL["topic_balance"]).fetchone()
        lines.append(
            f"corpus coverage: {done[0]:.1%} of cells at target, {done[1]} overfilled; sigma/mu across topics "
            f"{balance[2]:.3f}, largest topic share {balance[3]:.2%}"
        )
    if "open_gaps" in tables:
        n, missing = con.execute("SELECT count(*), coalesce(sum(missing), 0) FROM open_gaps").fetchone()
        first = con.execute("SELECT topic, track, zone, level FROM open_gaps ORDER BY rank LIMIT 3").fetchall()
        lines.append(
            f"open gaps: {n} cells below their measured capacity, {int(missing)} questions missing"
            + (f"; filled first: {', '.join('|'.join(c) for c in first)}" if first else "")
        )
    if "applicability_evidence" in tables:
        flagged = int(
            con.execute("SELECT count(*) FROM applicability_evidence WHERE physics_without_evidence").fetchone()[0]
        )
        lines.append(f"applicable by physics, not served by the generator: {flagged} pairs (applicability_evidence)")
    return "\n".join(lines)


def import_command(path: str, out: str | None) -> int:
    """Import, print the summary (errors on stderr), write the rows. Exit 2 when the path is
    missing, 1 when nothing could be imported (or written), else 0 even if some files failed."""
    from pathlib import Path

    from staffml_dagster.interchange import import_corpus, write_import
    from staffml_dagster.paths import warehouse_dir
    from staffml_dagster.specs import SpecError, cached_specs

    try:
        result = import_corpus(path, cached_specs())
    except FileNotFoundError as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        print(f"bad spec, nothing imported: {exc}", file=sys.stderr)
        return 2
    for problem in result.errors:
        print(f"error: {problem}", file=sys.stderr)
    print(result.summary())
    if not result.rows:
        print(f"nothing could be imported from {path}", file=sys.stderr)
        return 1
    try:
        target = write_import(result, Path(out) if out else warehouse_dir() / "imported_corpus")
    except OSError as exc:
        print(f"import read {len(result.rows)} question(s) but could not write them: {exc}", file=sys.stderr)
        return 1
    print(f"written: {target} (report: {target.parent / 'import_report.json'})")
    if not out:
        print('query: staffml sql "SELECT track, zone, count(*) FROM imported_corpus GROUP BY ALL ORDER BY ALL"')
    return 0


def audit_command(path: str, out: str | None) -> int:
    """Import a corpus, run every audit check, write report.jsonl and report.html, print the
    summary. Exit 0 when nothing is found, 1 when there are findings, 2 on bad input (a
    missing path, nothing importable, a bad spec) or when the report cannot be written."""
    from pathlib import Path

    from staffml_dagster.interchange.audit import audit_path, write_report
    from staffml_dagster.paths import reports_dir
    from staffml_dagster.specs import SpecError, cached_specs

    try:
        result = audit_path(path, cached_specs())
    except FileNotFoundError as exc:
        print(f"audit failed: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        print(f"bad spec, nothing audited: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"audit failed: {exc}", file=sys.stderr)
        return 2
    for finding in result.findings:
        if finding.criterion == "unreadable":
            print(f"error: {finding.field}: {finding.evidence}", file=sys.stderr)
    try:
        written = write_report(result, Path(out) if out else reports_dir() / "audit")
    except OSError as exc:
        print(f"audit ran but the report could not be written: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    print(f"report: {written['html']} (one finding a line: {written['jsonl']})")
    return 1 if result.findings else 0


def export_command(out: str | None, fmt: str) -> int:
    from pathlib import Path

    from staffml_dagster.interchange import FORMATS, corpus_rows, export_corpus
    from staffml_dagster.paths import data_dir

    try:
        rows = corpus_rows()
    except LookupError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    try:
        written = export_corpus(rows, Path(out) if out else data_dir() / "export", FORMATS if fmt == "all" else [fmt])
    except (OSError, ValueError, TypeError) as exc:
        print(f"export failed, nothing written: {exc}", file=sys.stderr)
        return 1
    for name, where in written.items():
        print(f"{name}: {where}")
    print(f"exported {len(rows)} question(s)")
    return 0


def review_export_command(args) -> int:
    from pathlib import Path

    from staffml_dagster.paths import data_dir
    from staffml_dagster.quality.review_rounds import ReviewError, export_review_sheet
    from staffml_dagster.storage.sql_shell import read_only_connection

    ids = [i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else None
    try:
        with read_only_connection() as con:  # --where is typed by a person: the sql shell's locked-down views
            sheet, written = export_review_sheet(
                Path(args.out) if args.out else data_dir() / "reviews" / "out",
                data_dir(),
                con,
                n=args.n,
                seed=args.seed,
                where=args.where,
                ids=ids,
                calibration_n=args.calibration,
                calibration_file=Path(args.calibration_file) if args.calibration_file else None,
                shuffle=not args.no_shuffle,
                force=args.force,
                rejected_n=args.rejected,
            )
    except ReviewError as exc:
        print(f"review export failed, nothing written: {exc}", file=sys.stderr)
        return 1
    sources = [e["source"] for e in sheet.key.values()]
    rejected = f", {sources.count('rejected')} rejected by the gate" if sources.count("rejected") else ""
    print(
        f"sheet {sheet.sheet}: {len(sheet.items)} items ({sources.count('corpus')} corpus, "
        f"{sources.count('calibration')} calibration{rejected})"
    )
    print(f"give the reviewer: {written['html']}  (or, for a spreadsheet, {written['csv']})")
    print(f"key (never give it to the reviewer): {written['key']}")
    print("then: staffml review import FILLED_FILE --round N --reviewer NAME")
    return 0


def review_import_command(args) -> int:
    from pathlib import Path

    from staffml_dagster.paths import data_dir, warehouse_dir
    from staffml_dagster.quality.review_rounds import ReviewError, import_review_files

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"review import: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        result, path = import_review_files(
            [Path(f) for f in args.files],
            args.reviewer,
            args.round,
            data_dir(),
            warehouse_dir(),
            Path(args.key) if args.key else None,
        )
    except (ReviewError, OSError) as exc:
        print(f"review import failed, nothing written: {exc}", file=sys.stderr)
        return 2
    for problem in result.errors:
        print(f"error: {problem}", file=sys.stderr)
    print(
        f"{len(result.rows)} review row(s) kept from {result.files} file(s), {len(result.errors)} error(s); "
        f"reviewer {args.reviewer}, round {args.round}"
    )
    if path:
        print(
            f"written: {path}  "
            '(query: staffml sql "SELECT reviewer, round, avg(staff_worthy) FROM reviews GROUP BY ALL")'
        )
    return 0 if len(result.rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="staffml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="materialize every stage offline and print a summary")
    p_run.add_argument(
        "--partition", action="append", help='a partition key "<topic>|<track>" (repeatable); default: all'
    )
    p_run.add_argument("--backend", help="generator backend (default: item-models, or STAFFML_GENERATOR)")
    p_run.add_argument(
        "--strict", action="store_true", help="exit 1 when a blocking corpus check fails (default: report it)"
    )
    p_sql = sub.add_parser("sql", help="run a read-only DuckDB query over the warehouse views and print the result")
    p_sql.add_argument("query")
    p_sql.add_argument(
        "--write-to", metavar="DIR", help="also allow COPY (...) TO files in DIR, a folder outside the warehouse"
    )
    sub.add_parser("report", help="print the corpus summary")
    p_import = sub.add_parser(
        "import", help="read a StaffML corpus (YAML tree, .json or .jsonl bundle) into the warehouse"
    )
    p_import.add_argument("path", help="a folder or a single question/bundle file")
    p_import.add_argument(
        "--out",
        help=(
            "folder for part.parquet and import_report.json "
            "(default: <warehouse>/imported_corpus, the view imported_corpus)"
        ),
    )
    p_audit = sub.add_parser(
        "audit",
        help="check a StaffML corpus: napkin math, hardware figures, off-track platforms, truncation, placeholders",
    )
    p_audit.add_argument("path", help="a published StaffML folder tree, a .json/.jsonl bundle or one question file")
    p_audit.add_argument("--out", help="folder for report.jsonl and report.html (default: <data>/reports/audit)")
    p_export = sub.add_parser("export", help="write the validated corpus as StaffML YAML, JSONL and/or Parquet")
    p_export.add_argument("--out", help="output folder (default: data/export)")
    p_export.add_argument("--format", choices=["yaml", "jsonl", "parquet", "all"], default="all")
    p_review = sub.add_parser("review", help="blind review rounds: export a review sheet, import the filled ones")
    review_sub = p_review.add_subparsers(dest="review_command", required=True)
    p_rexp = review_sub.add_parser(
        "export",
        help="write a blind review sheet (offline HTML page and CSV) for a sample or a selection of the corpus",
    )
    p_rexp.add_argument(
        "--n", type=int, default=None, help="random corpus items to draw (default: every item of the selection)"
    )
    p_rexp.add_argument("--seed", type=int, default=0, help="seed of the draw and of the shuffle")
    p_rexp.add_argument("--where", help="SQL condition over the corpus view, e.g. \"track = 'edge' AND level = 'L5'\"")
    p_rexp.add_argument("--ids", help="comma-separated question ids to review")
    p_rexp.add_argument(
        "--rejected",
        type=int,
        default=0,
        help="questions the gate rejected to mix in, rendered like corpus items (default 0)",
    )
    p_rexp.add_argument(
        "--calibration", type=int, default=0, help="published StaffML calibration items to mix in (default 0)"
    )
    p_rexp.add_argument("--calibration-file", default=str(_default_calibration()), help="published StaffML rows, JSONL")
    p_rexp.add_argument("--no-shuffle", action="store_true", help="keep the selection's order")
    p_rexp.add_argument("--out", help="folder for the sheet (default: data/reviews/out)")
    p_rexp.add_argument("--force", action="store_true", help="write a sheet that was already exported again")
    p_rimp = review_sub.add_parser(
        "import", help="validate filled review sheets (JSON from the page, or the CSV) into the reviews table"
    )
    p_rimp.add_argument("files", nargs="+", help="filled sheets: .json saved by the page, or the .csv")
    p_rimp.add_argument("--round", type=int, required=True, help="review round (1, 2, ...)")
    p_rimp.add_argument("--reviewer", required=True, help="who scored them (letters, digits, . _ -)")
    p_rimp.add_argument("--key", help="the sheet's key file (default: data/reviews/sheets/<sheet>.json)")
    args = parser.parse_args(argv)

    if args.command == "review":
        return review_export_command(args) if args.review_command == "export" else review_import_command(args)
    if args.command == "import":
        return import_command(args.path, args.out)
    if args.command == "export":
        return export_command(args.out, args.format)
    if args.command == "audit":
        return audit_command(args.path, args.out)

    if args.command == "sql":
        from staffml_dagster.storage.sql_shell import QueryRefused, run_query

        try:
            df = run_query(args.query, write_dir=args.write_to)
        except QueryRefused as exc:
            print(f"query refused, nothing run: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # duckdb raises its own error types
            print(f"query failed: {exc}", file=sys.stderr)
            return 2
        with pd.option_context(
            "display.max_rows", 200, "display.max_columns", 50, "display.width", 200, "display.max_colwidth", 60
        ):
            print(df.to_string(index=False) if len(df) else "(no rows)")
        return 0
    if args.command == "report":
        print(summary())
        return 0
    if args.command == "run":
        from staffml_dagster.paths import data_dir

        problem = check_run_inputs(args.partition or [])
        if problem:
            print(f"{problem}; nothing materialized", file=sys.stderr)
            return 2
        print(
            "materializing every stage of "
            + (f"{len(args.partition)} partition(s)" if args.partition else "every partition, in one Dagster run")
            + "...",
            flush=True,
        )
        try:
            out = run_pipeline(args.partition, args.backend)
        except RunStopped as stopped:
            print(f"stopped by {stopped}", file=sys.stderr, flush=True)
            return 128 + stopped.signum
        failed = (
            f"{len(out['failed'])} failed partition(s)" if args.partition else f"{len(out['failed'])} failed step(s)"
        )
        print(
            f"done in {out['seconds']:.0f} s; {out['partitions']} partitions, {failed} "
            f"{out['failed'][:5] if out['failed'] else ''}".rstrip()
        )
        print(summary())
        print(
            "corpus checks (blocking): "
            + (
                "passed"
                if out["corpus_ok"]
                else "FAILED, the corpus is not releasable yet: " + "; ".join(out["failed_checks"])
            )
        )
        print(f"coverage report: {data_dir() / 'reports' / 'coverage.html'}")
        print(
            f"warehouse: {data_dir() / 'warehouse'}  "
            '(query: staffml sql "SELECT zone, count(*) FROM questions GROUP BY zone")'
        )
        print("UI: make ui  ->  http://127.0.0.1:3000")
        return 1 if out["failed"] or (args.strict and not out["corpus_ok"]) else 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
