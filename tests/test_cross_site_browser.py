"""Other web sites against the local stack, in real headless Chromium.

The API runs with open access and the web server forwards /api/ to it, as `tandem up`
starts them. A page from another loopback port (the "other site") tries what any site a
user visits could: a no-cors multipart upload and a text/plain JSON batch (simple
requests, sent without a preflight), a cross-origin read, a DELETE. A second browser
resolves `rebind.test` to 127.0.0.1, as a DNS-rebinding attack makes a browser do, and
reads the servers as that name, same-origin. Nothing may be stored and nothing read; the
stack's own page, as a control, can write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome

from tests.browser import require_chromium, start_chromium
from tests.e2e_support import Backends, running, start_api, start_web, upload
from tests.support import ServerProcess, free_port

pytestmark = pytest.mark.slow

REBIND_NAME = "rebind.test"
ATTACK = """
const [api, web, done] = arguments;
const results = {};
async function attempt(name, request) {
  try {
    const response = await request();
    const readable = response.type !== "opaque";
    results[name] = {type: response.type, status: response.status,
                     body: readable ? await response.text() : null};
  } catch (error) {
    results[name] = {error: String(error)};
  }
}
function files() {
  const form = new FormData();
  form.append("files", new Blob(["Planted by another site."], {type: "text/plain"}),
              "planted.txt");
  return form;
}
const batch = JSON.stringify({documents: [{id: "planted-batch", title: "P", text: "P"}]});
for (const [label, base] of [["api", api], ["web", web]]) {
  await attempt(label + " upload", () => fetch(base + "/api/documents",
      {method: "POST", mode: "no-cors", body: files()}));
  await attempt(label + " batch", () => fetch(base + "/api/documents/batch",
      {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: batch}));
  await attempt(label + " read", () => fetch(base + "/api/documents"));
  await attempt(label + " delete", () => fetch(base + "/api/documents/kept.txt",
      {method: "DELETE"}));
}
done(results);
"""
SAME_ORIGIN_READ = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async r => done({status: r.status, body: await r.text()}),
                         e => done({error: String(e)}));
"""
OWN_UPLOAD = """
const done = arguments[arguments.length - 1];
const form = new FormData();
form.append("files", new Blob(["Written by the stack's own page."]), "own.txt");
fetch("/api/documents", {method: "POST", body: form}).then(r => done(r.status),
                                                           e => done(String(e)));
"""


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    require_chromium()


@pytest.fixture(scope="module")
def open_api(backends: Backends) -> Iterator[ServerProcess]:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no model server: nothing here searches
    with running(start_api(backends, nowhere)) as server:
        yield server


@pytest.fixture(scope="module")
def web(open_api: ServerProcess, backends: Backends) -> Iterator[ServerProcess]:
    with running(start_web(open_api.url, backends.log_dir)) as server:
        yield server


class _OtherSite(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = b"<!doctype html><title>another site</title><p>Nothing to see."
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows the assertions


@pytest.fixture(scope="module")
def other_site() -> Iterator[str]:
    """A page on another loopback port: a different origin, the same site (127.0.0.1)."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _OtherSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def rebinding_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    """Chromium that resolves rebind.test to 127.0.0.1, as after a DNS rebinding."""
    rules = f"--host-resolver-rules=MAP {REBIND_NAME} 127.0.0.1"
    driver = start_chromium(tmp_path_factory.mktemp("rebinding-profile"), (rules,))
    try:
        yield driver
    finally:
        driver.quit()


def document_ids(api: ServerProcess) -> set[str]:
    page = httpx.get(f"{api.url}/api/documents", params={"limit": 200}).json()
    return {item["id"] for item in page["items"]}


def attempts_count(api: ServerProcess) -> int:
    stats = httpx.get(f"{api.url}/api/stats").json()
    return int(stats["queue_length"])


def test_another_site_can_neither_write_nor_read(
    browser: Chrome, open_api: ServerProcess, web: ServerProcess, other_site: str
) -> None:
    assert upload(open_api, {"kept.txt": b"Stored by the command line."}).status_code == 202
    queued_before = attempts_count(open_api)  # no worker: every stored item stays queued
    browser.get(other_site)
    results: dict[str, dict[str, Any]] = browser.execute_async_script(ATTACK, open_api.url, web.url)
    browser.get("about:blank")
    for label in ("api", "web"):
        # Writes went out as simple requests, and their answers stayed opaque...
        assert results[f"{label} upload"] == {"type": "opaque", "status": 0, "body": None}
        assert results[f"{label} batch"] == {"type": "opaque", "status": 0, "body": None}
        # ...reads and the DELETE (its preflight unanswered) failed in the browser.
        assert "Failed to fetch" in results[f"{label} read"].get("error", ""), results
        assert "Failed to fetch" in results[f"{label} delete"].get("error", ""), results
    # Nothing was stored or deleted, and it was the servers that refused the writes.
    assert attempts_count(open_api) == queued_before
    assert "planted-batch" not in document_ids(open_api)
    assert "cross_site_refused method=POST path=/api/documents " in open_api.log()
    assert "cross_site_refused method=POST path=/api/documents " in web.log()


def test_the_stacks_own_page_can_write(
    browser: Chrome, open_api: ServerProcess, web: ServerProcess
) -> None:
    queued_before = attempts_count(open_api)
    browser.get(f"{web.url}/")
    assert browser.execute_async_script(OWN_UPLOAD) == 202
    browser.get("about:blank")
    assert attempts_count(open_api) == queued_before + 1


@pytest.mark.parametrize("server", ["api", "web"])
def test_a_rebound_name_reads_nothing(
    rebinding_browser: Chrome, open_api: ServerProcess, web: ServerProcess, server: str
) -> None:
    base = open_api.url if server == "api" else web.url
    port = base.rsplit(":", 1)[1]
    rebound = f"http://{REBIND_NAME}:{port}"
    rebinding_browser.get(f"{rebound}/api/health" if server == "api" else f"{rebound}/healthz")
    # Same-origin now, so the browser would hand the page any answer: the answer is 400.
    read = rebinding_browser.execute_async_script(SAME_ORIGIN_READ, f"{rebound}/api/documents")
    rebinding_browser.get("about:blank")
    assert read["status"] == 400, read
    assert "host_not_allowed" in read["body"] and "kept.txt" not in read["body"]
