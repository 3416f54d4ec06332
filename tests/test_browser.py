"""The Dagster UI of the deployment, seen in a real browser.

Headless Chromium from the Debian packages (/usr/bin/chromium, driven by Playwright's Python
package, which ships its driver; no browser is ever downloaded) opens the asset catalog of the
webserver that tests/deployment.py starts, finds every stage asset there and saves a
screenshot of the catalog and of the lineage graph under the reports directory
(``STAFFML_DATA_DIR/reports``, ``data/reports/`` by default).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from tests.deployment import shared_deployment

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the assets of staffml_dagster/stages/, from the specs to the corpus, and their groups
STAGE_ASSETS = ["skills", "zones", "levels", "tracks", "topics", "hardware_platforms", "applicability_matrix", "cells",
                "cell_capacity", "questions", "question_embeddings", "validated_questions", "corpus", "coverage_report"]
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


@pytest.fixture
def browser_page(browser_deployment):
    """A page in a fresh headless Chromium profile, and the list of requests it was refused."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="staffml-chromium-")
    blocked: list[str] = []
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 1300})
            try:
                # the page may only talk to the webserver on the loopback
                def local_only(route):
                    if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
                        route.continue_()
                    else:
                        blocked.append(route.request.url)
                        route.abort()

                context.route("**/*", local_only)
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(UI_TIMEOUT_MS)
                yield page, blocked
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


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
    page.goto(f'{dep.webserver_url}/asset-groups~{quote(LINEAGE_SELECTION)}', wait_until="domcontentloaded")
    _dismiss_welcome(page)
    for group in STAGE_GROUPS:
        page.get_by_text(group, exact=True).filter(visible=True).nth(1).wait_for(state="visible")
    expect(page.get_by_text("imported", exact=True)).to_have_count(0)  # not upstream of the corpus
    lineage = out / "dagster-asset-lineage.png"
    page.screenshot(path=str(lineage))
    assert lineage.stat().st_size > 10_000
    print(f"screenshots: {catalog} {lineage}; requests blocked (not loopback): {len(blocked)}")
