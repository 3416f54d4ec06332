"""The Dagster UI of the deployment and the project's report pages, seen in a real browser.

Headless Chromium from the Debian packages (/usr/bin/chromium, driven by Playwright's Python
package, which ships its driver; no browser is ever downloaded) opens the asset catalog of the
webserver that tests/deployment.py starts, finds every stage asset there and saves a
screenshot of the catalog and of the lineage graph under the reports directory
(``STAFFML_DATA_DIR/reports``, ``data/reports/`` by default). It also opens the coverage page
and the Great Expectations results page from files with every request off the machine refused,
as a reader without a network would, and screenshots them there.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from tests.deployment import shared_deployment

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the assets of staffml_dagster/stages/, from the specs to the corpus, and their groups
STAGE_ASSETS = [
    "skills",
    "zones",
    "levels",
    "tracks",
    "topics",
    "hardware_platforms",
    "applicability_matrix",
    "cells",
    "cell_capacity",
    "questions",
    "question_embeddings",
    "validated_questions",
    "corpus",
    "coverage_report",
]
STAGE_GROUPS = ["design", "taxonomy", "applicability", "capacity", "questions", "validation", "corpus"]
LOADING = re.compile(r"^Loading")
LINEAGE_SELECTION = '+key:"corpus"'  # the corpus and everything upstream of it
# how long the UI may take to render (a guard against hanging, not an assertion)
UI_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def browser_deployment(request):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    return shared_deployment(request)  # left running for the deployment test, which stops it


@contextmanager
def local_only_page():
    """A page in a fresh headless Chromium profile that may load files and talk to the loopback
    only (every other request is aborted, as without a network), and the list of refused URLs."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="staffml-chromium-")
    blocked: list[str] = []
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 1300},
            )
            try:

                def local_only(route):
                    url = route.request.url
                    if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith(
                        ("data:", "blob:", "file:")
                    ):
                        route.continue_()
                    else:
                        blocked.append(url)
                        route.abort()

                context.route("**/*", local_only)
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(UI_TIMEOUT_MS)
                yield page, blocked
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")


@pytest.fixture
def browser_page(browser_deployment):
    """A page that may only talk to the webserver on the loopback, and the requests it was refused."""
    with local_only_page() as opened:
        yield opened


def _dismiss_welcome(page) -> None:
    """A fresh browser profile gets Dagster's one-time community dialog over the page; skip it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip", exact=True)
    try:
        skip.wait_for(state="visible", timeout=10_000)
    except PlaywrightTimeout:
        return  # not shown (this profile has seen it, or the UI no longer has it)
    skip.click()
    skip.wait_for(state="hidden")


def test_asset_catalog_shows_every_stage(browser_deployment, browser_page):
    from playwright.sync_api import expect

    from staffml_dagster.paths import reports_dir

    dep = browser_deployment
    page, blocked = browser_page
    page.goto(f"{dep.webserver_url}/assets", wait_until="domcontentloaded")
    # the catalog renders from GraphQL; wait for the last asset of the pipeline to appear
    page.locator('a[href="/assets/corpus"]').first.wait_for(state="visible")
    _dismiss_welcome(page)
    missing = [a for a in STAGE_ASSETS if page.locator(f'a[href="/assets/{a}"]').count() == 0]
    assert not missing, f"not in the asset catalog: {missing}"
    # the rows name the code location the webserver loaded over gRPC, and the stage groups
    body = page.inner_text("body")
    assert "staffml_dagster" in body
    for group in STAGE_GROUPS:
        assert group in body, group

    # the status column fills in from a second query; shoot once every row has its status
    expect(page.get_by_text(LOADING)).to_have_count(0, timeout=UI_TIMEOUT_MS)

    out = reports_dir() / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    catalog = out / "dagster-asset-catalog.png"
    page.screenshot(path=str(catalog), full_page=True)
    assert catalog.stat().st_size > 10_000 and catalog.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the lineage of the corpus: every stage group upstream of it, drawn as one node per group
    # (so each name shows at least twice: in the sidebar and in the graph)
    page.goto(f"{dep.webserver_url}/asset-groups~{quote(LINEAGE_SELECTION)}", wait_until="domcontentloaded")
    _dismiss_welcome(page)
    for group in STAGE_GROUPS:
        page.get_by_text(group, exact=True).filter(visible=True).nth(1).wait_for(state="visible")
    expect(page.get_by_text("imported", exact=True)).to_have_count(0)  # not upstream of the corpus
    lineage = out / "dagster-asset-lineage.png"
    page.screenshot(path=str(lineage))
    assert lineage.stat().st_size > 10_000
    print(f"screenshots: {catalog} {lineage}; requests blocked (not loopback): {len(blocked)}")


def _screenshot(page, name: str, **kwargs) -> Path:
    from staffml_dagster.paths import reports_dir

    out = reports_dir() / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    shot = out / name
    page.screenshot(path=str(shot), **kwargs)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return shot


def _sample_coverage_page(directory: Path) -> Path:
    """The coverage page of the real specs (86 topics, 4 tracks, the applicability matrix and the
    cells of the design) over a made-up corpus: every 9th applicable partition empty, every 5th
    filled to half its cells' targets, the others to their targets."""
    import pandas as pd

    from staffml_dagster.quality.coverage import coverage, overview_section, write_report
    from staffml_dagster.specs import cached_specs
    from staffml_dagster.stages.applicability import applicability_rows
    from staffml_dagster.stages.capacity import cell_rows

    specs = cached_specs()
    matrix = applicability_rows(specs)
    applicable = matrix[matrix["applicable"]]
    cells = cell_rows(specs, set(zip(applicable["topic"], applicable["track"])))
    plan = {key: i for i, key in enumerate(sorted(zip(applicable["topic"], applicable["track"])))}
    rows = []
    for cell in cells.itertuples():
        i = plan[(cell.topic, cell.track)]
        n = 0 if i % 9 == 0 else (cell.target // 2 if i % 5 == 0 else cell.target)
        rows += [
            (f"{cell.topic}|{cell.track}|{cell.zone}|{cell.level}|{k}", cell.topic, cell.track, cell.zone, cell.level)
            for k in range(n)
        ]
    corpus = pd.DataFrame(rows, columns=["id", "topic", "track", "zone", "level"])
    cov = coverage(corpus, cells, matrix)
    overview = overview_section(
        cov,
        matrix,
        [(t.id, t.name, t.area) for t in specs.topics.topics],
        [(t.id, t.name) for t in specs.tracks.tracks],
        list(specs.topics.areas),
        [z.id for z in specs.zones],
        specs.quality.balance_max_cv,
        specs.quality.max_topic_share,
    )
    return write_report(cov, {}, directory, overview_html=overview)


def test_coverage_page_reads_at_a_glance_offline(chromium, tmp_path):
    from playwright.sync_api import expect

    from staffml_dagster.specs import cached_specs

    specs = cached_specs()
    page_file = _sample_coverage_page(tmp_path)
    with local_only_page() as (page, blocked):
        page.goto(page_file.as_uri())
        heat = page.locator("#topic-track")
        # track names head the table, above the first area
        expect(heat.locator("thead th.track")).to_have_text([t.name for t in specs.tracks.tracks])
        # one group per competency area, in the specs' order, each listing its topics
        areas = [a for a in specs.topics.areas if any(t.area == a for t in specs.topics.topics)]
        expect(heat.locator("tbody.area")).to_have_count(len(areas))
        assert heat.locator("tbody.area").evaluate_all("els => els.map(e => e.dataset.area)") == areas
        for topic in specs.topics.topics[:5]:
            expect(
                heat.locator(f"tbody.area[data-area='{topic.area}'] th.topic", has_text=topic.name).first
            ).to_be_visible()
        # inapplicable pairs greyed, applicable empty ones drawn apart from them, both on screen
        inapplicable, empty = heat.locator("td.cell.inapplicable"), heat.locator("td.cell.empty")
        n_pairs = len(specs.topics.topics) * len(specs.tracks.tracks)
        assert inapplicable.count() + empty.count() + heat.locator("td.cell.filled").count() == n_pairs
        assert inapplicable.count() > 0 and empty.count() > 0
        grey = inapplicable.first.evaluate("e => getComputedStyle(e).backgroundImage")
        blank = empty.first.evaluate("e => getComputedStyle(e).backgroundColor + ' ' + getComputedStyle(e).boxShadow")
        assert "gradient" in grey and "gradient" not in blank and "rgb(255, 255, 255)" in blank
        # coloured by fill: the partitions at capacity share one colour, the half-filled ones another
        shown = heat.locator("td.cell.filled").evaluate_all(
            "els => els.map(e => [parseFloat(e.dataset.fill), getComputedStyle(e).backgroundColor])"
        )
        at_capacity = {c for f, c in shown if f >= 1}
        partly = {c for f, c in shown if f < 0.75}
        assert len(at_capacity) == 1 and partly and not (partly & at_capacity), shown
        # the legend, the thresholds and the sigma/mu figures are shown
        expect(page.locator("#legend")).to_contain_text("at capacity")
        expect(page.locator("#legend")).to_contain_text("not applicable")
        balance = page.locator("#balance")
        expect(balance).to_contain_text(f"< {specs.quality.balance_max_cv:g} (balance_max_cv)")
        expect(balance).to_contain_text(f"≤ {specs.quality.max_topic_share:.0%} (max_topic_share)")
        for figure in (
            "σ/μ of questions per topic",
            "σ/μ of questions per track",
            "σ/μ of questions per zone",
            "σ/μ of questions per level",
        ):
            expect(balance.locator("tr", has_text=figure).locator("td.figure")).to_have_text(
                re.compile(r"^\d+\.\d{3}$")
            )
        # labels a reader can read: at least 12 px
        sizes = heat.locator("th.topic").evaluate_all("els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
        assert min(sizes) >= 12
        shot = _screenshot(page, "coverage-page.png")
    assert not blocked, f"the coverage page asked for the network: {blocked}"
    print(f"screenshot: {shot}")


def test_great_expectations_results_open_offline(chromium, tmp_path):
    import pandas as pd
    from playwright.sync_api import expect

    from staffml_dagster.quality.expectations import run_suite
    from staffml_dagster.specs import cached_specs

    suites = cached_specs().quality.suites
    docs = tmp_path / "gx"
    zones = run_suite(
        pd.DataFrame({"zone": ["recall"], "level": ["L1"]}),
        "corpus_zones",
        suites["corpus_zones"],
        {"zones": [z.id for z in cached_specs().zones], "levels": [lv.id for lv in cached_specs().levels.levels]},
        docs_dir=docs,
    )
    partitions = run_suite(
        pd.DataFrame({"questions": [4, 0]}), "corpus_partitions", suites["corpus_partitions"], {}, docs_dir=docs
    )
    assert not zones.success and not partitions.success and partitions.results_page.is_file()
    with local_only_page() as (page, blocked):
        page.goto(partitions.results_page.as_uri())
        table = page.locator("#suites")
        expect(table.locator("tbody tr")).to_have_count(2)
        expect(table.locator("tr", has_text="corpus_partitions").locator("td").nth(1)).to_have_text("failed")
        section = page.locator("section#corpus_partitions")
        expect(section.locator("tr.expectation")).to_have_count(len(suites["corpus_partitions"].expectations))
        expect(section).to_contain_text("1 of 2 values unexpected")
        expect(page.locator("section#corpus_zones")).to_contain_text("expect_column_distinct_values_to_contain_set")
        shot = _screenshot(page, "gx-validation-results.png", full_page=True)
    assert not blocked, f"the results page asked for the network: {blocked}"
    print(f"screenshot: {shot}")


def _readme_ui_jobs() -> list[str]:
    """The jobs the README's "In the UI" paragraph names, in the order it names them."""
    from staffml_dagster.definitions import defs

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("**In the UI**", 1)[1].split("**From the CLI**", 1)[0]
    names = {job.name for job in defs.resolve_all_job_defs()}
    named = [n for n in re.findall(r"`([a-z_]+)`", section) if n in names]
    return list(dict.fromkeys(named))


def test_readme_ui_path_launches_without_upstream_warnings():
    """The UI warns before a launch when an asset the selection reads, outside it, was never
    materialized; a selection holding a partitioned asset opens a backfill dialog. Followed in
    the README's order, the jobs it names do neither unexpectedly."""
    from staffml_dagster.definitions import defs
    from staffml_dagster.partitions import topic_track

    path = _readme_ui_jobs()
    assert path == ["design_stages", "questions_job", "corpus_job", "refresh_partition"], path
    graph = defs.resolve_asset_graph()
    selection = {
        name: {k.to_user_string() for k in defs.resolve_job_def(name).asset_layer.executable_asset_keys}
        for name in path
    }
    assert not any(
        graph.get(k).partitions_def for k in defs.resolve_job_def("design_stages").asset_layer.executable_asset_keys
    )
    for name in ("questions_job", "refresh_partition"):
        assert defs.resolve_job_def(name).partitions_def == topic_track, name
        assert {"questions", "question_embeddings", "validated_questions"} <= selection[name], name
    assert "cell_capacity" in selection["questions_job"] and "cell_capacity" not in selection["refresh_partition"]
    materialized: set[str] = set()
    for name in path:
        keys = defs.resolve_job_def(name).asset_layer.executable_asset_keys
        upstream = {p.to_user_string() for k in keys for p in graph.get(k).parent_keys} - selection[name]
        assert upstream <= materialized, (
            f"{name} would warn that {sorted(upstream - materialized)} are not materialized"
        )
        materialized |= selection[name]


def test_readme_ui_jobs_are_in_the_ui(browser_deployment, browser_page):
    """Every job of the README's UI path has its page in the UI with a *Materialize all* button
    (not pressed: the deployment test counts the runs from zero). The partitioned jobs' button
    reads "Materialize all…" (it opens the partition dialog), the others' launch at once."""
    from playwright.sync_api import expect

    from staffml_dagster.definitions import defs

    dep = browser_deployment
    page, blocked = browser_page
    for name in _readme_ui_jobs():
        page.goto(f"{dep.webserver_url}/locations/staffml_dagster/jobs/{name}", wait_until="domcontentloaded")
        _dismiss_welcome(page)
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
        label = "Materialize all…" if defs.resolve_job_def(name).partitions_def else "Materialize all"
        expect(page.get_by_role("button", name=re.compile(f"{label}$"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    _screenshot(page, "dagster-job-refresh-partition.png")
