"""Great Expectations suites from specs/quality.yaml, run for real (GX 1.x, ephemeral context), and the
per-partition suite in plain pandas (plain_suite), held to the same verdicts and failure lines."""

import socket

import pandas as pd
import pytest

from staffml_dagster.quality import expectations as ex
from staffml_dagster.quality.expectations import MissingParameterError, SuiteResult, resolve_kwargs, run_suite
from staffml_dagster.quality.plain_suite import run_plain_suite, unsupported_expectations
from staffml_dagster.specs import Expectation, Suite, load_specs


@pytest.fixture(scope="module")
def real_specs():
    return load_specs()


@pytest.fixture(scope="module")
def params(real_specs):
    return {
        "zones": [z.id for z in real_specs.zones],
        "levels": [lv.id for lv in real_specs.levels.levels],
        "tracks": [t.id for t in real_specs.tracks.tracks],
        "areas": list(real_specs.topics.areas),
        "backends": ["item-models"],
    }


@pytest.fixture(scope="module")
def questions(real_specs, params):
    """A small validated-questions frame, with list and dict columns like the real one."""
    rows = []
    for i in range(12):
        rows.append(
            {
                "id": f"q-{i:03d}",
                "topic": real_specs.topics.topics[0].id,
                "track": params["tracks"][i % len(params["tracks"])],
                "zone": params["zones"][i % len(params["zones"])],
                "level": params["levels"][i % len(params["levels"])],
                "competency_area": params["areas"][i % len(params["areas"])],
                "title": f"Memory wall on accelerator {i}",
                "scenario": "A team serves a 7B-parameter model on one accelerator and sees throughput far below peak. "
                * 2,
                "question": "What bounds the decode throughput here?",
                "realistic_solution": "Decode is memory-bandwidth bound: bytes per token over bandwidth.",
                "common_mistake": "Dividing FLOPs by peak compute.",
                "napkin_math": "14 GB / 3.35 TB/s = 4.2 ms per token",
                "calc": [{"op": "div", "a": 14e9, "b": 3.35e12, "result": 4.2e-3}],
                "answer_value": 4.2 + i,
                "answer_unit": "ms",
                "platforms": ["h100-sxm", "a100-sxm"],
                "backend": "item-models",
                "passed": True,
            }
        )
    return pd.DataFrame(rows)


def test_valid_questions_pass(real_specs, params, questions):
    suite = real_specs.quality.suites["validated_questions"]
    result = run_suite(questions, "validated_questions", suite, params)
    assert isinstance(result, SuiteResult)
    assert result.success, result.failures
    assert result.failures == []
    assert result.evaluated == len(suite.expectations)
    assert result.blocking is suite.blocking
    assert result.docs_path is None


def test_bad_zone_and_null_title_fail_naming_the_columns(real_specs, params, questions):
    bad = questions.copy()
    bad.loc[2, "zone"] = "no-such-zone"
    bad.loc[5, "title"] = None
    result = run_suite(bad, "validated_questions", real_specs.quality.suites["validated_questions"], params)
    assert not result.success
    zone = [line for line in result.failures if "[zone]" in line]
    title = [line for line in result.failures if "[title]" in line]
    assert len(zone) == 1 and "expect_column_values_to_be_in_set" in zone[0] and "'no-such-zone'" in zone[0], (
        result.failures
    )
    assert any("expect_column_values_to_not_be_null" in line and "1 of 12" in line for line in title), result.failures
    # the null title is not also reported as too short: length checks skip nulls
    assert len(result.failures) == 2, result.failures


def _topics(counts):
    return pd.DataFrame({"topic": [f"topic-{i}" for i in range(len(counts))], "questions": counts})


def _topic_params(table):
    mean, total = table["questions"].mean(), table["questions"].sum()
    return {"max_topic_stdev": 0.5 * mean, "max_topic_count": 0.1 * total, "topic_count": len(table)}


def test_corpus_topics_balanced_passes_unbalanced_fails(real_specs):
    suite = real_specs.quality.suites["corpus_topics"]
    balanced = _topics([40, 42, 38, 41, 39, 40, 43, 37, 40, 40, 41, 39, 40, 38, 42])
    ok = run_suite(balanced, "corpus_topics", suite, _topic_params(balanced))
    assert ok.success, ok.failures
    assert ok.blocking is True

    unbalanced = _topics([600] + [10] * 14)
    bad = run_suite(unbalanced, "corpus_topics", suite, _topic_params(unbalanced))
    assert not bad.success
    joined = "\n".join(bad.failures)
    assert "expect_column_stdev_to_be_between [questions]" in joined
    assert "expect_column_max_to_be_between [questions]" in joined and "observed_value=600" in joined
    assert "expect_table_row_count_to_equal" not in joined  # the row count is right


def test_data_docs_written(real_specs, params, questions, tmp_path):
    docs = tmp_path / "docs"
    result = run_suite(
        questions, "validated_questions", real_specs.quality.suites["validated_questions"], params, docs_dir=docs
    )
    assert result.success, result.failures
    assert result.docs_path == (docs / "index.html").resolve()
    assert result.docs_path.is_file()
    assert list((docs / "validations").rglob("*.html")), "no validation page"
    # a second run into the same site keeps the first run's page
    run_suite(questions, "validated_questions", real_specs.quality.suites["validated_questions"], params, docs_dir=docs)
    assert len(list((docs / "validations").rglob("*.html"))) == 2


def test_data_docs_site_shared_across_processes(real_specs, params, questions, tmp_path, monkeypatch):
    """Another process (another Dagster step) adding to the same site keeps this one's page.

    A fresh set of Data Contexts stands in for the other process: nothing in memory is shared,
    only what is on disk under docs_dir.
    """
    docs = tmp_path / "docs"
    table = _topics([10] * 12)
    run_suite(table, "corpus_topics", real_specs.quality.suites["corpus_topics"], _topic_params(table), docs_dir=docs)
    monkeypatch.setattr(ex, "_contexts", {})
    other = run_suite(
        pd.DataFrame({"questions": [3, 0]}),
        "corpus_partitions",
        real_specs.quality.suites["corpus_partitions"],
        {},
        docs_dir=docs,
    )
    assert not other.success and other.docs_path is not None
    pages = sorted(p.relative_to(docs / "validations").parts[0] for p in (docs / "validations").rglob("*.html"))
    assert pages == ["corpus_partitions", "corpus_topics"]
    index = (docs / "index.html").read_text()
    assert "corpus_topics" in index and "corpus_partitions" in index


def test_offline_results_page_beside_the_data_docs(real_specs, tmp_path, monkeypatch):
    """GX's Data Docs load their scripts from CDNs; validation_results.html shows every suite's
    latest result with no script and no external resource, and each run is added, not replaced."""
    docs = tmp_path / "docs"
    table = _topics([10] * 12)
    first = run_suite(
        table, "corpus_topics", real_specs.quality.suites["corpus_topics"], _topic_params(table), docs_dir=docs
    )
    assert first.results_page == (docs / "validation_results.html").resolve() and first.results_page.is_file()
    monkeypatch.setattr(ex, "_contexts", {})  # another process adds to the same site
    failed = run_suite(
        pd.DataFrame({"questions": [3, 0, 0]}),
        "corpus_partitions",
        real_specs.quality.suites["corpus_partitions"],
        {},
        docs_dir=docs,
    )
    assert not failed.success and failed.results_page == first.results_page
    run_suite(table, "corpus_topics", real_specs.quality.suites["corpus_topics"], _topic_params(table), docs_dir=docs)
    page = failed.results_page.read_text()
    assert "<script" not in page and "http" not in page and "<link" not in page
    assert "<td><a href='#corpus_partitions'>corpus_partitions</a></td><td class='fail'>failed</td>" in page
    assert "<td><a href='#corpus_topics'>corpus_topics</a></td><td class='pass'>passed</td>" in page
    assert "2 of 3 values unexpected; e.g. 0 x2" in page and "expect_column_values_to_be_between" in page
    assert "Earlier runs (1, latest 1 shown)" in page  # corpus_topics ran twice
    assert real_specs.quality.suites["corpus_partitions"].description in page
    # each run's link to GX's own page points at a page that exists
    from staffml_dagster.quality.validation_docs import stored_results

    runs = stored_results(docs)
    assert [len(runs[s]) for s in ("corpus_partitions", "corpus_topics")] == [1, 2]
    assert all((docs / r.gx_page).is_file() for rs in runs.values() for r in rs)
    assert f"href='{runs['corpus_partitions'][0].gx_page.as_posix()}'" in page


def test_results_page_skips_an_unreadable_result(tmp_path, caplog):
    from staffml_dagster.quality.validation_docs import stored_results, write_results_page

    bad = tmp_path / ".gx" / "validations" / "corpus_zones" / "__none__" / "20260101T000000.000000Z" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert stored_results(tmp_path) == {} and str(bad) in caplog.text
    assert "No validation result stored yet" in write_results_page(tmp_path).read_text()


def test_no_network_and_no_leftover_objects(real_specs, params, questions, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    suite = real_specs.quality.suites["validated_questions"]
    assert run_suite(questions, "validated_questions", suite, params).success
    assert run_suite(questions, "validated_questions", suite, params, docs_dir=tmp_path).success
    for context in (ex._get_context(), ex._get_context(tmp_path)):
        assert len(context.data_sources.all()) == 0
        assert list(context.validation_definitions.all()) == []


def test_empty_frame_passes_null_and_set_checks(real_specs, params, questions):
    result = run_suite(
        questions.iloc[0:0], "validated_questions", real_specs.quality.suites["validated_questions"], params
    )
    assert result.success, result.failures
    assert result.evaluated == len(real_specs.quality.suites["validated_questions"].expectations)


def test_frame_without_the_columns_fails_instead_of_crashing(real_specs, params):
    result = run_suite(pd.DataFrame(), "validated_questions", real_specs.quality.suites["validated_questions"], params)
    assert not result.success
    assert any("[id]" in line and "does not exist" in line for line in result.failures), result.failures


def test_resolve_kwargs():
    kwargs = {"column": "zone", "value_set": "${zones}", "max_value": "${cap}", "note": "at most ${cap}"}
    out = resolve_kwargs(kwargs, {"zones": ("a", "b"), "cap": 3})
    assert out == {"column": "zone", "value_set": ["a", "b"], "max_value": 3, "note": "at most 3"}
    with pytest.raises(KeyError, match=r"parameter \$\{zones\} has no value"):
        resolve_kwargs(kwargs, {"cap": 3})
    with pytest.raises(MissingParameterError, match=r"suite corpus_zones: .*\$\{zones\}"):
        resolve_kwargs(kwargs, {"cap": 3, "zones": None}, suite="corpus_zones")


def test_missing_parameter_raises_from_run_suite(real_specs, params, questions):
    partial = {k: v for k, v in params.items() if k != "backends"}
    with pytest.raises(KeyError, match=r"suite validated_questions: .*\$\{backends\} has no value"):
        run_suite(questions, "validated_questions", real_specs.quality.suites["validated_questions"], partial)


def test_unknown_expectation_type_is_a_clear_error(questions):
    suite = Suite(
        description="x", expectations=[Expectation(type="expect_column_to_be_lovely", kwargs={"column": "id"})]
    )
    with pytest.raises(ValueError, match=r"suite odd: unknown expectation type 'expect_column_to_be_lovely'"):
        run_suite(questions, "odd", suite, {})


# --------------------------------------------------------------------------- the per-partition suite in pandas


def _breaking(frame: pd.DataFrame, expectation, params) -> pd.DataFrame:
    """A copy of ``frame`` that breaks this one expectation in row 3 (and nothing else)."""
    bad = frame.copy()
    kwargs = resolve_kwargs(expectation.kwargs, params)
    column, kind = kwargs["column"], expectation.type
    if kind == "expect_column_values_to_be_unique":
        bad.loc[3, column] = bad.loc[4, column]
    elif kind == "expect_column_values_to_not_be_null":
        bad[column] = bad[column].astype(object)
        bad.loc[3, column] = None
    elif kind == "expect_column_values_to_be_in_set":
        bad.loc[3, column] = f"no-such-{column}"
    elif kind == "expect_column_values_to_be_between":
        low = kwargs["min_value"]
        bad.loc[3, column] = low if kwargs.get("strict_min") else low - 1
    elif kind == "expect_column_value_lengths_to_be_between":
        bad.loc[3, column] = "x" * (kwargs["min_value"] - 1)
        bad.loc[5, column] = "y" * (kwargs["max_value"] + 1)
    else:
        raise AssertionError(f"no way to break {kind} in this test")
    return bad


def _validated_expectations():
    return list(enumerate(load_specs().quality.suites["validated_questions"].expectations))


@pytest.mark.parametrize(
    "index, expectation",
    _validated_expectations(),
    ids=lambda x: x if isinstance(x, int) else f"{x.type}[{x.kwargs.get('column')}]",
)
def test_each_per_partition_expectation_fails_on_a_frame_that_breaks_it(
    real_specs, params, questions, index, expectation
):
    """The plain pandas runner of the per-partition check fails exactly the broken
    expectation, with the same failure line Great Expectations writes for the same frame."""
    suite = real_specs.quality.suites["validated_questions"]
    bad = _breaking(questions, expectation, params)
    plain = run_plain_suite(bad, "validated_questions", suite, params)
    assert not plain.success
    assert len(plain.failures) == 1, plain.failures
    assert plain.failures[0].startswith(f"{expectation.type} [{expectation.kwargs['column']}]: ")
    assert "values unexpected" in plain.failures[0]
    assert plain.failures == run_suite(bad, "validated_questions", suite, params).failures


def test_plain_suite_reports_what_great_expectations_reports(real_specs, params, questions):
    """Valid, empty, column-less and mistyped frames: the same verdict and failure lines."""
    suite = real_specs.quality.suites["validated_questions"]
    mistyped = questions.copy()
    mistyped["answer_value"] = "forty"
    mistyped.loc[2, "title"] = 5
    several = questions.copy()
    several.loc[[2, 5], "zone"] = "nowhere"
    several.loc[6, "zone"] = "elsewhere"
    several.loc[[1, 2], "id"] = None
    for frame in (questions, questions.iloc[0:0], pd.DataFrame(), mistyped, several):
        plain = run_plain_suite(frame, "validated_questions", suite, params)
        gx = run_suite(frame, "validated_questions", suite, params)
        assert (plain.success, plain.evaluated, plain.failures) == (gx.success, gx.evaluated, gx.failures)
        assert plain.blocking is suite.blocking and plain.docs_path is None
    assert run_plain_suite(questions, "validated_questions", suite, params).success


def test_plain_suite_runs_every_type_the_spec_uses_and_refuses_others(real_specs, questions, params):
    assert unsupported_expectations(real_specs.quality.suites["validated_questions"]) == []
    odd = Suite(
        description="x",
        expectations=[
            Expectation(type="expect_column_stdev_to_be_between", kwargs={"column": "answer_value", "max_value": 1})
        ],
    )
    with pytest.raises(
        ValueError,
        match=r"suite odd: expectation type\(s\) expect_column_stdev_to_be_between cannot run without Great "
        r"Expectations",
    ):
        run_plain_suite(questions, "odd", odd, {})
    partial = {k: v for k, v in params.items() if k != "backends"}
    with pytest.raises(KeyError, match=r"suite validated_questions: .*\$\{backends\} has no value"):
        run_plain_suite(questions, "validated_questions", real_specs.quality.suites["validated_questions"], partial)


def test_plain_suite_honours_mostly(questions):
    suite = Suite(
        description="x",
        expectations=[
            Expectation(
                type="expect_column_values_to_be_in_set",
                kwargs={"column": "zone", "value_set": ["recall"], "mostly": 0.05},
            )
        ],
    )
    loose = run_plain_suite(questions, "loose", suite, {})
    strict = run_plain_suite(
        questions,
        "strict",
        Suite(
            description="x",
            expectations=[
                Expectation(
                    type="expect_column_values_to_be_in_set", kwargs={"column": "zone", "value_set": ["recall"]}
                )
            ],
        ),
        {},
    )
    assert loose.success and not strict.success
    assert loose.failures == run_suite(questions, "loose", suite, {}).failures
