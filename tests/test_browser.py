"""Real browser, real server, real default model: the chat UI, the widget on an intranet page, and the API.

Chromium is Debian's (`scripts/install.sh` installs it), driven by Playwright. One server for the
module; the examples in examples/ are served from other origins (ports) as an intranet would.
Set RAG_SCREENSHOTS=docs to refresh the README's screenshots.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import HOSTILE_DOCUMENT, PARIS, ROOT, SEEDS, free_port, running_server
from playwright.sync_api import Browser, Page, expect, sync_playwright

from rag.serving.app import create_app, prepared_assistant
from rag.settings import Settings

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN = "admin-secret"
QUESTION = "What did LeCun propose in Paris?"
LECUN_PROPOSAL = ("repository", "human knowledge", "shared", "common model", "collaborativ", "global")
ANSWER_TIMEOUT_MS = 240_000  # a CPU shared with other jobs can be slow
SCREENSHOTS = os.environ.get("RAG_SCREENSHOTS")


def _words(text: str) -> str:
    return " ".join(text.split())


PARIS_TEXT = _words((SEEDS / PARIS).read_text(encoding="utf-8"))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve_folder(folder: Path, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int]:
    """Ports for the intranet (on the allowlist) and for some other site (not on it)."""
    return free_port(), free_port()


@pytest.fixture(scope="module")
def server(origins: tuple[int, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        index_dir=tmp_path_factory.mktemp("index"),
        default_corpus=SEEDS,
        admin_token=ADMIN,
        allowed_origins=[f"http://127.0.0.1:{origins[0]}"],
    )
    assert settings.generator_model == "qwen2.5-coder-1.5b"
    with running_server(create_app(prepared_assistant(settings))) as url:
        yield url


@pytest.fixture(scope="module")
def sites(server: str, origins: tuple[int, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """examples/ pointed at the test server, served from the allowed origin and from another one."""
    folder = tmp_path_factory.mktemp("examples")
    for example in (ROOT / "examples").glob("*.html"):
        (folder / example.name).write_text(example.read_text().replace("http://127.0.0.1:7860", server))
    servers = [_serve_folder(folder, port) for port in origins]
    yield f"http://127.0.0.1:{origins[0]}", f"http://127.0.0.1:{origins[1]}"
    for site in servers:
        site.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; afterwards, nothing it loaded may have come from outside this machine."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    hosts: set[str] = set()
    context.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or ""))
    yield page
    context.close()
    assert hosts <= {"127.0.0.1", ""}, f"the page loaded from {hosts}"


def _screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name))


def _ask_in_ui(page: Page, question: str) -> None:
    box = page.locator("#rag-question textarea")
    box.fill(question)
    box.press("Enter")


# ---- 1. the chat UI --------------------------------------------------------------------------------


def test_ui_streams_a_cited_answer_and_shows_the_highlighted_passage(page: Page, server: str) -> None:
    page.goto(server)
    expect(page.get_by_text(QUESTION)).to_be_visible()  # an example question on first load
    _ask_in_ui(page, QUESTION)
    reading = page.locator("#rag-sources .rag-sources-title", has_text="Reading")  # the passages, before the model
    expect(reading).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#rag-sources .rag-source").count() >= 1
    assert page.locator("#rag-chat .rag-timings").count() == 0  # shown while the answer is still to come
    expect(page.locator("#rag-chat .rag-draft")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)  # streams...
    expect(page.locator("#rag-chat .rag-timings")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)  # ...then the answer
    answer = page.locator('#rag-chat [data-testid="bot"]').last.inner_text()
    assert any(key in answer.lower() for key in LECUN_PROPOSAL), answer
    assert "first token" in answer

    markers = page.locator("#rag-chat a.rag-cite")
    assert markers.count() >= 1
    for i in range(markers.count()):  # the Paris article is among the cited passages
        markers.nth(i).click()
        card = page.locator(".rag-source.rag-active")
        expect(card).to_be_visible()
        if PARIS in card.locator(".rag-meta").inner_text():
            break
    else:
        pytest.fail("no citation leads to the Paris article")
    quote = _words(card.locator("mark").inner_text())
    assert len(quote) > 20 and quote in PARIS_TEXT
    page.mouse.move(0, 0)
    _screenshot(page, "ui.png")

    with page.expect_popup() as popup:
        card.locator("a.rag-open").click()
    document = popup.value
    expect(document.locator("mark#cited")).to_be_visible()
    assert _words(document.locator("mark#cited").inner_text()) == quote
    assert PARIS in document.locator("header").inner_text()


def test_ui_abstention_looks_different_and_the_conversation_clears(page: Page, server: str) -> None:
    page.goto(server)
    _ask_in_ui(page, "What did Macron announce?")
    abstention = page.locator("#rag-chat .rag-abstain")
    expect(abstention).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(abstention).to_contain_text("Not in the documents")
    expect(page.locator("#rag-sources")).to_contain_text("No sources")
    page.locator("#rag-clear").click()
    expect(page.locator("#rag-chat .rag-abstain")).to_have_count(0)
    expect(page.get_by_text(QUESTION)).to_be_visible()  # the examples are back


# ---- 2. and 3. the widget on an intranet page ------------------------------------------------------


def test_widget_on_an_intranet_page_answers_with_citations(page: Page, sites: tuple[str, str]) -> None:
    intranet, _ = sites
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(f"{intranet}/intranet.html")
    page.locator("#rag-widget button.launcher").click()
    widget = page.frame_locator("#rag-widget iframe")
    expect(widget.locator("h1")).to_have_text("Ask the AI news desk")  # data-title
    widget.locator("#question").fill(QUESTION)
    widget.locator("#question").press("Enter")
    reading = widget.locator(".msg.pending .reading li")  # what is being read, before the model writes
    expect(reading.first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    assert widget.locator(".msg.final").count() == 0
    final = widget.locator(".msg.final")
    expect(final).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    assert any(key in final.locator(".text").inner_text().lower() for key in LECUN_PROPOSAL)

    sources = final.locator(".source")
    assert any(PARIS in sources.nth(i).locator(".meta").inner_text() for i in range(sources.count()))
    final.locator("button.cite").first.click()
    active = final.locator(".source.active")
    expect(active).to_be_visible()
    assert _words(active.locator("mark").inner_text()) in PARIS_TEXT
    _screenshot(page, "widget.png")


def test_widget_is_refused_on_an_origin_not_on_the_allowlist(page: Page, server: str, sites: tuple[str, str]) -> None:
    _, elsewhere = sites
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text))
    page.goto(f"{elsewhere}/intranet.html")
    page.locator("#rag-widget button.launcher").click()
    page.wait_for_timeout(3000)
    expect(page.frame_locator("#rag-widget iframe").locator("#question")).to_have_count(0)
    assert any("frame-ancestors" in text for text in refusals), refusals
    # Nor can that page call the API itself: CORS refuses its origin.
    outcome = page.evaluate(
        """url => fetch(url + "/api/ask", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({question: "What did LeCun propose?"})})
                 .then(response => "answered " + response.status, error => "refused " + error.name)""",
        server,
    )
    assert outcome == "refused TypeError"


@pytest.mark.parametrize("example", ["iframe.html", "web-component.html"])
def test_embedding_examples_work_from_an_allowed_origin(page: Page, sites: tuple[str, str], example: str) -> None:
    intranet, _ = sites
    page.goto(f"{intranet}/{example}")
    ui = page.frame_locator("iframe").first if example == "iframe.html" else page.locator("gradio-app")
    expect(ui.locator("#rag-question textarea")).to_be_visible(timeout=60_000)
    expect(ui.get_by_text(QUESTION)).to_be_visible()


def test_api_docs_load_without_the_internet(page: Page, server: str) -> None:
    page.goto(f"{server}/docs")
    expect(page.get_by_text("/api/ask/stream")).to_be_visible(timeout=30_000)


# ---- 4. the API ------------------------------------------------------------------------------------


def test_api_json_stream_errors_and_gradio_client(server: str) -> None:
    with httpx.Client(base_url=server, timeout=ANSWER_TIMEOUT_MS / 1000) as client:
        data = client.post("/api/ask", json={"question": QUESTION}).json()
        assert data["abstained"] is False, data
        assert any(c["source"].endswith(PARIS) for c in data["citations"])

        with client.stream("POST", "/api/ask/stream", json={"question": "Who is Meta's chief AI scientist?"}) as r:
            events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
        sources, *tokens, final = events
        assert any(s["source"].endswith(PARIS) for s in sources["sources"])  # the passages first
        assert len(tokens) > 2 and all("text" in t for t in tokens)
        assert "LeCun" in final["answer"] and final["citations"]

        assert client.post("/api/ask", json={"question": "  "}).status_code == 422
        assert client.post("/api/ask", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400

    from gradio_client import Client

    result = Client(server + "/", verbose=False).predict(QUESTION, api_name="/ask")
    assert result["abstained"] is False, result
    assert any(c["source"].endswith(PARIS) for c in result["citations"])


# ---- hostile documents -----------------------------------------------------------------------------


def test_a_hostile_document_never_runs_in_the_ui_or_the_widget(
    page: Page, server: str, sites: tuple[str, str], tmp_path: Path
) -> None:
    notice = tmp_path / "canteen-notice.txt"
    notice.write_text(HOSTILE_DOCUMENT)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    question = "When is the staff canteen closed for cleaning?"

    page.goto(server)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#rag-admin-token input").fill(ADMIN)
    page.locator("#rag-upload input[type=file]").set_input_files([str(notice), str(empty)])
    page.get_by_role("button", name="Add to the index").click()
    report = page.locator("#rag-upload-report")
    expect(report).to_contain_text("2 files processed", timeout=60_000)
    expect(report).to_contain_text("Added canteen-notice.txt")
    expect(report).to_contain_text("Skipped empty.txt — ")  # with the reason
    expect(page.locator("#rag-documents")).to_contain_text("onerror")  # the title, shown as text

    page.get_by_role("tab", name="Ask").click()
    _ask_in_ui(page, question)
    expect(page.locator("#rag-chat .rag-timings")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator(".rag-source")).to_contain_text("<script>window.__xss")
    assert page.evaluate("() => window.__xss") is None

    intranet, _ = sites
    page.goto(f"{intranet}/intranet.html")
    page.locator("#rag-widget button.launcher").click()
    widget = page.frame_locator("#rag-widget iframe")
    widget.locator("#question").fill(question)
    widget.locator("#question").press("Enter")
    reading = widget.locator(".msg.pending .reading li")  # what is being read, before the model writes
    expect(reading.first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    assert widget.locator(".msg.final").count() == 0
    final = widget.locator(".msg.final")
    expect(final).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(final.locator(".source .title")).to_contain_text("onerror")
    frame = next(f for f in page.frames if f.url.startswith(server))
    assert frame.evaluate("() => window.__xss") is None
    assert page.evaluate("() => window.__xss") is None
