"""A self-contained page of the whole-corpus suites' validation results, beside GX's Data Docs.

Great Expectations' Data Docs load jQuery, Bootstrap, bootstrap-table and Vega from CDNs: offline
the site index is blank (its tables are drawn by those scripts) and the result pages are
unstyled. The GX package ships none of those scripts, so this module renders the same results
without them: it reads the validation results GX stored as JSON under ``<docs_dir>/.gx/validations``
(``<suite>/<run name>/<run time>/<batch>.json``) and writes ``<docs_dir>/validation_results.html``
with no script, no external resource and every value escaped. It needs no GX import, so it can
be rendered from the stores alone (``write_results_page``).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staffml_dagster.storage.atomic import write_atomic

log = logging.getLogger(__name__)

RESULTS_PAGE = "validation_results.html"
STORE = Path(".gx") / "validations"
SUITES = Path(".gx") / "expectations"
HISTORY = 10  # earlier runs listed per suite
MAX_VALUE = 300  # characters of a kwarg or observed value shown

_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}th{background:#f2f2f2}
.pass{color:#1e7d32;font-weight:bold}.fail{color:#c0392b;font-weight:bold}code{font-size:12px;white-space:pre-wrap}
section.suite{margin-top:2em}"""


@dataclass
class StoredResult:
    suite: str
    run_time: str  # ISO time of the validation run
    path: Path  # the JSON file in the store
    data: dict
    description: str = ""  # the suite's description (specs/quality.yaml), from the expectations store

    @property
    def success(self) -> bool:
        return bool(self.data.get("success"))

    @property
    def gx_page(self) -> Path:
        """GX's own page of this result: the same relative path under the site, .html for .json."""
        return Path("validations") / self.path.relative_to(self.path.parents[3]).with_suffix(".html")


def stored_results(docs_dir: Path) -> dict[str, list[StoredResult]]:
    """Every validation result in the store, per suite, newest first. A file that cannot be read
    as a result is skipped with a warning naming it."""
    store = Path(docs_dir) / STORE
    results: dict[str, list[StoredResult]] = {}
    for path in sorted(store.glob("*/*/*/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            suite = str(data.get("suite_name") or path.parts[-4])
            meta = data.get("meta") or {}
            run_time = str(meta.get("validation_time") or (meta.get("run_id") or {}).get("run_time") or path.parts[-2])
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("validation result %s skipped: %s", path, exc)
            continue
        results.setdefault(suite, []).append(
            StoredResult(suite, run_time, path, data, _suite_description(Path(docs_dir), suite))
        )
    for runs in results.values():
        runs.sort(key=lambda r: r.run_time, reverse=True)
    return dict(sorted(results.items()))


def _suite_description(docs_dir: Path, suite: str) -> str:
    try:
        stored = json.loads((docs_dir / SUITES / f"{suite}.json").read_text(encoding="utf-8"))
        return str((stored.get("meta") or {}).get("description") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return html.escape(text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "...")


def _observed(result: dict, exception: dict | None) -> str:
    if exception and exception.get("raised_exception"):
        return f"could not evaluate: {_value(exception.get('exception_message') or 'exception')}"
    parts = []
    if "unexpected_count" in result:
        parts.append(f"{result.get('unexpected_count')} of {result.get('element_count')} values unexpected")
        sample = result.get("partial_unexpected_counts") or [
            {"value": v} for v in result.get("partial_unexpected_list") or []
        ]
        if sample:
            parts.append(
                "e.g. "
                + ", ".join(_value(c["value"]) + (f" x{c['count']}" if "count" in c else "") for c in sample[:5])
            )
    if result.get("observed_value") is not None:
        parts.append(f"observed {_value(result['observed_value'])}")
    return "; ".join(parts) or "-"


def _expectation_rows(data: dict) -> str:
    rows = []
    for r in data.get("results") or []:
        config = r.get("expectation_config") or {}
        kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k not in ("batch_id", "result_format")}
        column = kwargs.pop("column", None)
        expected = ", ".join(f"{html.escape(k)}={_value(v)}" for k, v in kwargs.items()) or "-"
        ok = bool(r.get("success"))
        rows.append(
            f"<tr class='expectation'><td class='{'pass' if ok else 'fail'}'>{'pass' if ok else 'fail'}</td>"
            f"<td><code>{html.escape(str(config.get('type', '?')))}</code></td>"
            f"<td>{html.escape(str(column)) if column is not None else 'table'}</td>"
            f"<td><code>{expected}</code></td><td>{_observed(r.get('result') or {}, r.get('exception_info'))}</td></tr>"
        )
    return (
        "<table><thead><tr><th>status</th><th>expectation</th><th>column</th><th>expected</th><th>observed</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def results_page(results: dict[str, list[StoredResult]]) -> str:
    """HTML: per suite, the latest run's statistics and every expectation's outcome, then the earlier runs."""
    e = html.escape
    summary = "".join(
        f"<tr><td><a href='#{e(suite)}'>{e(suite)}</a></td>"
        f"<td class='{'pass' if runs[0].success else 'fail'}'>{'passed' if runs[0].success else 'failed'}</td>"
        f"<td>{e(runs[0].run_time)}</td><td>{len(runs)}</td></tr>"
        for suite, runs in results.items()
    )
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Great Expectations: validation results</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Great Expectations: validation results of the corpus suites</h1>",
        "<p>The suites of <code>specs/quality.yaml</code> run on the whole corpus (the blocking checks of the "
        "<code>corpus</code> asset), read from the results Great Expectations stored beside this page. This page needs "
        "no network. Great Expectations' own Data Docs (<a href='index.html'>index.html</a>) load their scripts and "
        "styles from CDNs and are blank without a network.</p>",
    ]
    if not results:
        body.append(
            "<p id='no-results'>No validation result stored yet: materialize the <code>corpus</code> asset (its checks "
            "run the suites).</p>"
        )
    else:
        body.append(
            "<table id='suites'><thead><tr><th>suite</th><th>latest run</th><th>at</th><th>runs stored</th></tr>"
            f"</thead><tbody>{summary}</tbody></table>"
        )
    for suite, runs in results.items():
        latest = runs[0]
        stats = latest.data.get("statistics") or {}
        body.append(
            f"<section class='suite' id='{e(suite)}'><h2>{e(suite)}: "
            f"<span class='{'pass' if latest.success else 'fail'}'>"
            f"{'passed' if latest.success else 'failed'}</span></h2>"
        )
        if latest.description:
            body.append(f"<p>{e(latest.description)}</p>")
        body.append(
            f"<p>Run at {e(latest.run_time)}: {stats.get('successful_expectations', '?')} of "
            f"{stats.get('evaluated_expectations', '?')} expectations met. "
            f"<a href='{e(latest.gx_page.as_posix())}'>Great Expectations' page of this run</a> "
            "(needs a network for its styles).</p>"
        )
        body.append(_expectation_rows(latest.data))
        if len(runs) > 1:
            earlier = "".join(
                f"<tr><td>{e(r.run_time)}</td>"
                f"<td class='{'pass' if r.success else 'fail'}'>{'passed' if r.success else 'failed'}</td></tr>"
                for r in runs[1 : HISTORY + 1]
            )
            body.append(
                f"<h3>Earlier runs ({len(runs) - 1}, latest {min(HISTORY, len(runs) - 1)} shown)</h3>"
                f"<table><thead><tr><th>at</th><th>result</th></tr></thead><tbody>{earlier}</tbody></table>"
            )
        body.append("</section>")
    body.append("</body></html>")
    return "\n".join(body)


def write_results_page(docs_dir: Path) -> Path:
    """Render every stored result of ``docs_dir`` into ``docs_dir/validation_results.html`` (temp file + rename)."""
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    page = docs_dir / RESULTS_PAGE
    write_atomic(page, results_page(stored_results(docs_dir)))
    return page
