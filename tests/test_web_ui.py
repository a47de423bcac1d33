"""The web UI in real headless Chromium, on the real stack: PostgreSQL, Redis, both model
servers, the API server, a worker and `tandem web` forwarding /api/ to the API.

Each step saves a screenshot under test-output/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.keys import Keys

from tests.browser import Page, require_chromium
from tests.e2e_support import (
    Backends,
    create_api_key,
    running,
    start_api,
    start_web,
    upload,
    wait_attempt,
)
from tests.hostile_text import HOSTILE_FILENAME, HOSTILE_QUERY, HOSTILE_TEXT
from tests.support import ServerProcess, free_port

pytestmark = pytest.mark.slow

DASH = "\N{EN DASH}"  # ranges on the page are written with an en dash
UPLOAD_LIMIT = 200_000  # bytes per upload request; the oversized file below exceeds it
HERON = "The grey heron stalks fish in shallow wetlands, standing still for minutes on end."
LIGHTHOUSE = "# Lighthouses\n\nA lighthouse keeper trimmed the wick and wound the clockwork."


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    """Skips without Chromium; fails instead under CI=true."""
    require_chromium()


@pytest.fixture(scope="module")
def api_env() -> dict[str, str]:
    return {"TANDEM_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}


@pytest.fixture
def page(browser: Chrome, web: ServerProcess) -> Iterator[Page]:
    ui = Page(browser, web.url)
    yield ui
    assert ui.leave() == []


def _search(page: Page, query: str) -> None:
    box = page.wait_for("#search-input")
    box.clear()
    box.send_keys(query, Keys.ENTER)
    page.wait_until(lambda: page.find("#search-summary").text not in ("", "Searching…"), "results")


def test_upload_index_search_open_and_delete(
    page: Page, worker: ServerProcess, tmp_path: Path
) -> None:
    files = {
        "heron.txt": HERON.encode(),
        "lighthouse.md": LIGHTHOUSE.encode(),
        "oversized.txt": b"too big " * (UPLOAD_LIMIT * 4),
        "program.exe": b"MZ\x90\x00",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page.open("#/upload")
    page.wait_for("#dropzone", "Drop files here")
    page.screenshot("01-upload-empty")
    # One send_keys with several paths is a multi-file pick in the real file input.
    page.find("#file-input").send_keys("\n".join(str(tmp_path / n) for n in files))
    heron = page.wait_for('.upload[data-filename="heron.txt"][data-status="indexed"]')
    assert "1 chunk" in heron.text
    page.wait_for('.upload[data-filename="lighthouse.md"][data-status="indexed"]')
    too_big = page.wait_for('.upload[data-filename="oversized.txt"][data-status="failed"]')
    assert "HTTP 413" in too_big.text and f"exceeds {UPLOAD_LIMIT} bytes" in too_big.text
    unsupported = page.wait_for('.upload[data-filename="program.exe"][data-status="failed"]')
    assert "unsupported file type" in unsupported.text
    assert page.find("#upload-summary").text == "2 indexed, 2 failed, 0 in progress"
    page.screenshot("02-upload-indexed-and-failed")

    page.go("#/search")
    _search(page, "heron wetlands")
    first = page.wait_for("#search-results .result")
    assert first.get_attribute("data-document-id") == "heron.txt"
    marks = [m.text for m in first.find_elements("css selector", ".snippet mark")]
    assert "heron" in marks and "wetlands" in marks
    assert "score" in first.find_element("css selector", ".score").text
    assert page.find("#search-notice").is_displayed() is False
    assert "hybrid" in page.find("#search-summary").text
    page.screenshot("03-search-hybrid")
    page.find('label[for="mode-keyword"]').click()
    page.wait_for("#search-summary", "keyword")
    assert page.driver.current_url.endswith("mode=keyword")
    page.screenshot("04-search-keyword")

    # Keyboard only: ↓ from the box to the first result, Enter opens it.
    page.find("#search-input").send_keys(Keys.ARROW_DOWN)
    focused = page.driver.switch_to.active_element
    assert focused.get_attribute("class") == "result-title"
    focused.send_keys(Keys.ENTER)
    page.wait_for("#document-title", "heron")
    chunk = page.wait_for("#document-chunks .chunk.target")
    assert "grey heron stalks fish" in chunk.text
    assert "heron.txt" in page.find("#document-details").text
    page.screenshot("05-document-chunks")

    page.go("#/documents")
    row = page.wait_for('#documents-table tr[data-document-id="heron.txt"]')
    page.wait_for('#documents-table tr[data-document-id="lighthouse.md"]')
    assert f"1{DASH}2 of 2 documents" in page.find("#documents-summary").text
    page.screenshot("06-documents")
    row.find_element("css selector", "button.danger").click()
    alert = page.driver.switch_to.alert
    assert "heron" in alert.text
    alert.accept()
    page.wait_for("#documents-notice", "Deleted")
    page.wait_gone('#documents-table tr[data-document-id="heron.txt"]')
    assert page.find("#documents-summary").text == "1 document"
    page.screenshot("07-documents-after-delete")

    page.go("#/search?q=heron%20wetlands&mode=keyword")
    page.wait_for("#search-summary", "No matches")
    assert page.find_all("#search-results .result") == []
    page.screenshot("08-search-after-delete")


# Elements the hostile text would create if anything rendered it as HTML: any <img> but
# the logo, any <script> in the body, any element with an inline event handler.
INJECTED_ELEMENTS = """
return [...document.querySelectorAll("body img:not([src='favicon.svg']), body script, [onerror]")]
  .map((e) => e.outerHTML);
"""


def test_hostile_document_text_and_name_render_as_text(
    page: Page, api: ServerProcess, worker: ServerProcess
) -> None:
    """Upload -> index -> search -> snippet -> document page, with markup in the text and in
    the filename: the page shows it all as text, and none of it runs."""
    accepted = upload(api, {HOSTILE_FILENAME: HOSTILE_TEXT.encode()})
    assert wait_attempt(api, accepted.json()["attempt_id"])["status"] == "succeeded"
    selector = f'[data-document-id="{HOSTILE_FILENAME}"]'
    page.open(f"#/search?q={quote(HOSTILE_QUERY)}&mode=keyword")
    result = page.wait_for(f"#search-results .result{selector}")
    snippet = result.find_element("css selector", ".snippet")
    assert "<script>window.xssRan = 1</script>" in snippet.text
    assert '<img src=x onerror="window.xssRan = 2">' in snippet.text
    assert "<mark>heron</mark>" in snippet.text  # the document's own tags, as text
    marks = [m.text for m in snippet.find_elements("css selector", "mark")]
    assert {"heron", "script", "onerror", "bitterns"} <= {m.lower() for m in marks}
    tags = page.driver.execute_script(
        "return [...arguments[0].querySelectorAll('*')].map((e) => e.tagName)", snippet
    )
    assert set(tags) == {"MARK"}
    assert HOSTILE_FILENAME in result.text
    assert page.driver.execute_script(INJECTED_ELEMENTS) == []
    page.screenshot("17-search-hostile-text")

    result.find_element("css selector", ".result-title").click()
    chunk = page.wait_for("#document-chunks .chunk", "window.xssRan = 1")
    assert HOSTILE_TEXT in chunk.text
    assert HOSTILE_FILENAME in page.find("#document-details").text
    assert page.driver.execute_script(INJECTED_ELEMENTS) == []
    page.go("#/documents")
    row = page.wait_for(f"#documents-table tr{selector}")
    assert HOSTILE_FILENAME in row.text
    assert page.driver.execute_script(INJECTED_ELEMENTS) == []
    assert page.driver.execute_script("return window.xssRan ?? null") is None
    page.screenshot("18-documents-hostile-name")


SANITIZE_SNIPPET = """
const done = arguments[arguments.length - 1];
import("/js/dom.js").then(({ markedSnippet }) => {
  const box = document.createElement("p");
  document.body.append(box);
  box.append(markedSnippet(arguments[0]));
  setTimeout(() => done({
    tags: [...box.querySelectorAll("*")].map((e) => e.tagName),
    text: box.textContent,
    ran: window.snippetRan ?? null,
  }), 200);
});
"""


def test_snippets_keep_only_mark_tags(page: Page) -> None:
    """The API escapes snippets; the page still lets nothing but <mark> through."""
    page.open("#/search")
    page.wait_for("#search-input")
    hostile = (
        "a <mark>hit</mark> &lt;b&gt; <b>bold</b><img src=x onerror='window.snippetRan=1'>"
        "<a href='javascript:window.snippetRan=2'>link</a> &amp; &#x27;&#233;&#39; &constructor;"
    )
    result = page.driver.execute_async_script(SANITIZE_SNIPPET, hostile)
    assert result == {
        "tags": ["MARK"],
        "text": "a hit <b> boldlink & 'é' &constructor;",
        "ran": None,
    }


DROP_FILES = """
const zone = document.getElementById("dropzone");
const files = new DataTransfer();
files.items.add(new File(["Puffins nest in burrows on sea cliffs."], "puffin.txt"));
files.items.add(new File(["# Gannets\\n\\nGannets dive from a great height."], "gannet.md"));
const event = (type) => new DragEvent(type, {dataTransfer: files, bubbles: true, cancelable: true});
zone.dispatchEvent(event("dragenter"));
const highlighted = zone.classList.contains("dragging");
zone.dispatchEvent(event("drop"));
return highlighted && !zone.classList.contains("dragging");
"""


def test_dropped_files_upload_and_index_each_on_its_own(page: Page, worker: ServerProcess) -> None:
    page.open("#/upload")
    page.wait_for("#dropzone")
    assert page.driver.execute_script(DROP_FILES) is True
    for name in ("puffin.txt", "gannet.md"):
        row = page.wait_for(f'.upload[data-filename="{name}"][data-status="indexed"]')
        assert row.find_element("css selector", "progress").get_attribute("value") == "1"
    page.screenshot("09-upload-dropped-files")


def test_status_page_shows_both_model_servers_and_counts(page: Page, worker: ServerProcess) -> None:
    page.open("#/status")
    # The indexing server's status comes from the workers, every few seconds.
    page.wait_for('#server-indexing[data-ready="true"]', "Ready")
    inference = page.wait_for('#server-inference[data-ready="true"]', "Ready")
    for label in ("URL", "QUEUE", "REQUESTS/S", "REQUESTS SERVED"):
        assert label in inference.text.upper()
    assert page.find("#count-queue .big-number").text.isdigit()
    assert page.find("#count-documents .big-number").text.isdigit()
    assert page.find("#count-chunks .big-number").text.isdigit()
    first_update = page.find("#status-updated").text
    page.wait_until(lambda: page.find("#status-updated").text != first_update, "auto-refresh")
    page.screenshot("10-status")


def test_documents_page_by_page(page: Page, api: ServerProcess, worker: ServerProcess) -> None:
    notes = [
        {"id": f"note-{i:02d}", "title": f"Field note {i:02d}", "text": f"Bird count number {i}."}
        for i in range(30)
    ]
    response = httpx.post(f"{api.url}/api/documents/batch", json={"documents": notes})
    assert wait_attempt(api, response.json()["attempt_id"])["status"] == "succeeded"
    total = httpx.get(f"{api.url}/api/documents", params={"limit": 1}).json()["total"]
    page.open("#/documents")
    page.wait_for("#documents-summary", f"1{DASH}25 of {total} documents")
    assert len(page.find_all("#documents-table tbody tr")) == 25
    assert not page.find("#page-previous").is_enabled()
    page.find("#page-next").click()
    page.wait_for("#documents-summary", f"26{DASH}{total} of {total} documents")
    assert page.driver.current_url.endswith("#/documents?offset=25")
    assert not page.find("#page-next").is_enabled()
    page.screenshot("11-documents-second-page")
    page.find("#page-previous").click()
    page.wait_for("#documents-summary", f"1{DASH}25 of {total}")


def test_keyword_only_notice_when_the_inference_server_is_down(
    browser: Chrome, backends: Backends, api: ServerProcess, worker: ServerProcess
) -> None:
    accepted = upload(api, {"kestrel.txt": b"A kestrel hovers over the verge before it dives."})
    assert wait_attempt(api, accepted.json()["attempt_id"])["status"] == "succeeded"
    nowhere = f"http://127.0.0.1:{free_port()}"
    with (
        running(start_api(backends, nowhere)) as blind_api,
        running(start_web(blind_api.url, backends.log_dir)) as blind_web,
    ):
        page = Page(browser, blind_web.url)
        page.open("#/search?q=kestrel%20hovers&mode=hybrid")
        notice = page.wait_for("#search-notice.warning", "keyword-only")
        assert notice.get_attribute("data-degraded") == "true"
        assert page.wait_for("#search-results .result").get_attribute("data-document-id") == (
            "kestrel.txt"
        )
        assert "keyword" in page.find("#search-summary").text
        page.screenshot("12-search-keyword-only-notice")
        page.go("#/status")
        page.wait_for('#server-inference[data-ready="false"]', "Not ready")
        page.screenshot("13-status-inference-down")
        assert page.leave() == []


def test_api_key_prompt_on_401_then_works(browser: Chrome, backends: Backends) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # search is not needed here
    with (
        running(start_api(backends, nowhere, open_access=False)) as locked_api,
        running(start_web(locked_api.url, backends.log_dir)) as locked_web,
    ):
        key = create_api_key(backends)
        page = Page(browser, locked_web.url)
        page.open("#/documents")
        reason = page.wait_for("#key-dialog[open] #key-dialog-reason", "needs an API key")
        assert reason.is_displayed()
        page.screenshot("14-api-key-prompt")
        page.find("#key-input").send_keys("tdm_not-a-real-key", Keys.ENTER)
        page.wait_for("#key-dialog[open] #key-dialog-reason", "not accepted")
        page.screenshot("15-api-key-rejected")
        page.find("#key-input").send_keys(key, Keys.ENTER)
        page.wait_gone("#key-dialog[open]")
        page.wait_for("#documents-summary", "documents")
        assert page.find("#key-button").get_attribute("aria-label") == "API key (set)"
        page.screenshot("16-api-key-accepted")
        # Kept for this tab's session only, and never written into the page.
        stored = page.driver.execute_script("return sessionStorage.getItem('tandem.apiKey')")
        assert stored == key
        assert key not in page.driver.page_source
        page.open("#/status")  # a fresh load keeps the key: no prompt this time
        page.wait_for("#count-documents .big-number")
        assert not page.find_all("#key-dialog[open]")
        assert page.leave() == []


def test_a_restricted_user_signed_in_sees_who_they_are_and_only_their_documents(
    browser: Chrome, backends: Backends, inference_server: ServerProcess, worker: ServerProcess
) -> None:
    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tandem.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ | backends.env(),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("users", "add", "dora")
    cli("users", "add", "chief", "--admin")
    dora = cli("api-key", "create", "--user", "dora", "--scope", "search").splitlines()[0]
    chief = cli("api-key", "create", "--user", "chief", "--scope", "admin").splitlines()[0]
    with (
        running(start_api(backends, inference_server.url, open_access=False)) as locked_api,
        running(start_web(locked_api.url, backends.log_dir)) as locked_web,
    ):
        batch = {
            "documents": [
                {"id": "open-otter", "title": "Otters", "text": "The otter census is public."},
                {
                    "id": "secret-otter",
                    "title": "Otter plan",
                    "text": "The otter relocation plan is for the chief only.",
                    "access": {"public": False},
                },
            ]
        }
        queued = httpx.post(
            f"{locked_api.url}/api/documents/batch",
            json=batch,
            headers={"Authorization": f"Bearer {chief}"},
            timeout=30,
        )
        assert queued.status_code == 202, queued.text
        deadline = time.monotonic() + 120
        while True:
            attempt = httpx.get(
                f"{locked_api.url}/api/index-attempts/{queued.json()['attempt_id']}",
                headers={"Authorization": f"Bearer {chief}"},
                timeout=10,
            ).json()
            if attempt["status"] == "succeeded":
                break
            assert time.monotonic() < deadline, attempt
            time.sleep(0.3)
        page = Page(browser, locked_web.url)
        page.open("#/search")
        page.wait_for("#key-dialog[open] #key-dialog-reason", "needs an API key")
        page.find("#key-input").send_keys(dora, Keys.ENTER)
        page.wait_gone("#key-dialog[open]")
        page.wait_for("#whoami", "dora · search")
        page.find("#search-input").send_keys("otter", Keys.ENTER)
        page.wait_for("#search-results .result")
        shown = {
            r.get_attribute("data-document-id") for r in page.find_all("#search-results .result")
        }
        assert "open-otter" in shown and "secret-otter" not in shown, shown
        page.screenshot("30-signed-in-restricted-user")
        page.open("#/documents")
        page.wait_for("#documents-summary", "document")
        assert "secret-otter" not in page.driver.page_source
        assert page.leave() == []
