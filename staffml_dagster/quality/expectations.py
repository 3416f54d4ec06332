"""Great Expectations suites declared in ``specs/quality.yaml``, run against a DataFrame.

The suites are GX 1.x objects built from the spec at run time: every ``type`` such as
``expect_column_values_to_be_unique`` maps to the class ``gx.expectations.ExpectColumnValuesToBeUnique``,
and every kwarg value of the form ``"${name}"`` is replaced by ``params["name"]`` first.

One ephemeral Data Context serves the process (plus one per Data Docs directory, see
:func:`_get_context`). Each call gets its own pandas data source under a unique name and deletes
it afterwards, so calls never collide and no execution engine (with its batch and metric caches)
outlives the call. Without ``docs_dir`` the suite is validated directly on a whole-dataframe
batch and nothing is stored. With ``docs_dir`` the suite is stored, a ValidationDefinition runs
it (storing the result) and ``build_data_docs`` renders that result and suite into a
local-filesystem Data Docs site rooted at ``docs_dir`` (what a Checkpoint's
``UpdateDataDocsAction`` does, but kept apart so a docs problem cannot fail the check).

GX 1.24 has no usage-statistics client any more (no posthog/segment code ships); analytics are
still switched off both ways GX knows (``GX_ANALYTICS_ENABLED=false`` before import and
``analytics_enabled=False`` in the context config), and nothing here touches the network.
"""

from __future__ import annotations

import os

os.environ["GX_ANALYTICS_ENABLED"] = "false"

import logging  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import (  # noqa: E402
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.expectations.expectation import Expectation as GxExpectation  # noqa: E402

from staffml_dagster.quality.suite_results import (  # noqa: E402
    MissingParameterError,
    SuiteResult,
    failure_line,
    resolve_kwargs,
    suite_params,
)
from staffml_dagster.specs import Suite  # noqa: E402

__all__ = ["MissingParameterError", "SuiteResult", "build_suite", "resolve_kwargs", "run_suite", "suite_params"]

log = logging.getLogger(__name__)

RESULT_FORMAT = "SUMMARY"  # counts plus up to 20 unexpected values per expectation


# --------------------------------------------------------------------------- suite


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def expectation_class(suite_name: str, type_: str) -> type[GxExpectation]:
    """``expect_column_values_to_be_unique`` -> ``gx.expectations.ExpectColumnValuesToBeUnique``."""
    cls = getattr(gx.expectations, _camel(type_), None)
    if not (isinstance(cls, type) and issubclass(cls, GxExpectation)):
        raise ValueError(
            f"suite {suite_name}: unknown expectation type {type_!r} "
            f"(no class gx.expectations.{_camel(type_)} in great_expectations {gx.__version__})"
        )
    return cls


def build_suite(suite_name: str, suite: Suite, params: dict) -> gx.ExpectationSuite:
    """The GX ExpectationSuite for a spec suite, with its parameters substituted."""
    expectations = []
    for i, spec in enumerate(suite.expectations):
        cls = expectation_class(suite_name, spec.type)
        kwargs = resolve_kwargs(spec.kwargs, params, suite=suite_name, expectation=spec.type)
        try:
            expectations.append(cls(**kwargs))
        except Exception as exc:  # pydantic validation of the kwargs
            raise ValueError(
                f"suite {suite_name}: expectation #{i} {spec.type}: invalid kwargs {kwargs!r}: {exc}"
            ) from exc
    return gx.ExpectationSuite(name=suite_name, expectations=expectations, meta={"description": suite.description})


# --------------------------------------------------------------------------- contexts

SITE = "local_site"
_lock = threading.RLock()  # a Data Context is not thread-safe
_contexts: dict[Path | None, Any] = {}


def _get_context(docs_dir: Path | None = None):
    """The process's ephemeral Data Context; with ``docs_dir``, the one that writes Data Docs there.

    Both keep data sources, validation definitions and checkpoints in memory and have no
    analytics and no progress bars. The plain one stores nothing else. The docs one keeps its
    expectation suites and validation results as JSON under ``docs_dir/.gx`` and renders the
    local filesystem site ``local_site`` into ``docs_dir``: the site index lists (and keeps)
    only pages whose suite and result are in those stores, so stores shared on disk let
    several processes and runs add to one site instead of each wiping the others' pages.
    """
    key = docs_dir.resolve() if docs_dir is not None else None
    if key not in _contexts:
        defaults = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
        stores = {name: dict(config) for name, config in defaults.stores.items()}
        sites: dict = {}
        if key is not None:
            for name, folder in (
                (defaults.expectations_store_name, "expectations"),
                (defaults.validation_results_store_name, "validations"),
            ):
                stores[name]["store_backend"] = {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(key / ".gx" / folder),
                }
            sites[SITE] = {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(key)},
            }
        config = DataContextConfig(
            store_backend_defaults=defaults,
            stores=stores,
            data_docs_sites=sites,
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        )
        _contexts[key] = gx.get_context(mode="ephemeral", project_config=config)
    return _contexts[key]


# --------------------------------------------------------------------------- results


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return info.get("exception_message") or "exception"
    for nested in info.values():  # {metric id: {raised_exception, exception_message, ...}}
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return nested.get("exception_message") or "exception"
    return None


def _failure_line(evr) -> str:
    config = evr.expectation_config
    return failure_line(config.type, dict(config.kwargs), evr.result or {}, _exception_message(evr.exception_info))


def _summarize(
    suite_name: str, suite: Suite, validation, docs_path: Path | None, results_page: Path | None = None
) -> SuiteResult:
    order: dict[tuple, int] = {}
    for i, e in enumerate(suite.expectations):  # report failures in spec order
        order.setdefault((e.type, e.kwargs.get("column")), i)
    failed = [r for r in validation.results if not r.success]
    failed.sort(
        key=lambda r: order.get((r.expectation_config.type, r.expectation_config.kwargs.get("column")), len(order))
    )
    return SuiteResult(
        suite=suite_name,
        success=bool(validation.success),
        blocking=suite.blocking,
        failures=[_failure_line(r) for r in failed],
        evaluated=len(validation.results),
        docs_path=docs_path,
        results_page=results_page,
    )


# --------------------------------------------------------------------------- run


def run_suite(
    df: pd.DataFrame, suite_name: str, suite: Suite, params: dict, docs_dir: Path | None = None
) -> SuiteResult:
    """Validate ``df`` against the spec suite ``suite_name`` with ``params`` substituted.

    Raises ``ValueError`` for an unknown expectation type or invalid kwargs and
    :class:`MissingParameterError` (a ``KeyError``) for a missing parameter: both are spec or
    caller errors. Anything GX raises while validating the data becomes a failed result with
    one line saying why, so an asset check always gets a :class:`SuiteResult`.

    With ``docs_dir`` the run is also rendered as GX Data Docs there (``docs_path`` is the
    site's index.html) and into ``validation_results.html`` beside it (``results_page``), which
    needs no network. Docs are best effort: if rendering fails the data is validated
    anyway and ``docs_path`` is None.
    """
    gx_suite = build_suite(suite_name, suite, params)  # config errors raise here, before GX runs
    docs_dir = Path(docs_dir) if docs_dir is not None else None
    with _lock:
        validation, docs_path, results_page = None, None, None
        if docs_dir is not None:
            try:
                validation, docs_path, results_page = _validate_with_docs(df, suite_name, gx_suite, docs_dir)
            except Exception as exc:  # noqa: BLE001 - docs are optional; validate without them
                log.warning(
                    "suite %s: Data Docs not written to %s (%s); validating without docs",
                    suite_name,
                    docs_dir,
                    exc,
                    exc_info=True,
                )
        if validation is None:
            try:
                validation = _validate(df, suite_name, gx_suite)
            except Exception as exc:  # noqa: BLE001 - GX failed on the data: a failed check, not a crash
                log.warning("suite %s could not be validated: %s", suite_name, exc, exc_info=True)
                return SuiteResult(
                    suite=suite_name,
                    success=False,
                    blocking=suite.blocking,
                    failures=[f"suite {suite_name}: validation could not run: {type(exc).__name__}: {exc}"],
                    evaluated=0,
                    docs_path=None,
                )
    return _summarize(suite_name, suite, validation, docs_path, results_page)


def _batch_definition(context, suite_name: str, tag: str):
    """A pandas data source (unique name) with one dataframe asset and a whole-dataframe batch definition."""
    source = context.data_sources.add_pandas(name=f"{suite_name}-{tag}")
    return source.add_dataframe_asset(name=suite_name).add_batch_definition_whole_dataframe("whole")


def _validate(df: pd.DataFrame, suite_name: str, gx_suite: gx.ExpectationSuite):
    """Validate on a transient batch; nothing is stored."""
    context = _get_context()
    tag = uuid.uuid4().hex[:12]
    try:
        batch = _batch_definition(context, suite_name, tag).get_batch(batch_parameters={"dataframe": df})
        return batch.validate(gx_suite, result_format=RESULT_FORMAT)
    finally:
        _quietly(context.data_sources.delete, f"{suite_name}-{tag}")


def _validate_with_docs(df: pd.DataFrame, suite_name: str, gx_suite: gx.ExpectationSuite, docs_dir: Path):
    """Store the suite, run a validation definition (which stores its result), render both into the site,
    then the offline page of every stored result (GX's own pages load their scripts from CDNs)."""
    from staffml_dagster.quality.validation_docs import write_results_page

    context = _get_context(docs_dir)
    tag = uuid.uuid4().hex[:12]
    definition_name = f"{suite_name}-{tag}"
    try:
        stored = context.suites.add_or_update(gx_suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=definition_name, data=_batch_definition(context, suite_name, tag), suite=stored
            )
        )
        run_id = gx.RunIdentifier(run_time=datetime.now(timezone.utc))
        validation = definition.run(batch_parameters={"dataframe": df}, result_format=RESULT_FORMAT, run_id=run_id)
        suite_id = ExpectationSuiteIdentifier(name=stored.name)
        result_id = ValidationResultIdentifier(
            expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=validation.batch_id
        )
        # what UpdateDataDocsAction does in a Checkpoint: render just this result and suite, then the index
        context.build_data_docs(site_names=[SITE], resource_identifiers=[result_id, suite_id])
    finally:
        _quietly(context.validation_definitions.delete, definition_name)
        _quietly(context.data_sources.delete, f"{suite_name}-{tag}")
    index = docs_dir.resolve() / "index.html"
    if not index.is_file():
        raise RuntimeError(f"no index.html in {docs_dir} after building Data Docs")
    return validation, index, write_results_page(docs_dir.resolve())


def _quietly(undo, name: str) -> None:
    try:
        undo(name)
    except Exception:  # noqa: BLE001 - best-effort cleanup of a uniquely named object
        log.debug("could not delete %s", name, exc_info=True)
