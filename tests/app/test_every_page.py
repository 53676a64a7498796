"""Every page of the studio in a real browser, opened the ways a user opens them: by its own URL right after the
studio restarts (a bookmark, a reload), and from the sidebar with every Settings tab. Each must show the
studio's own navigation and its title, and nothing may go wrong on the way: no console error, no failed
request, no request leaving the machine (the studio is offline), no traceback in the studio's log.

Its own studio (``python -m scripts.studio --no-sample``, one tiny clip in ``$VP_HOME/media``) on free
loopback ports, stopped and started again on the same port and ``VP_HOME`` for the direct links. Skipped
where ``tests/app/test_browser.py`` is (no Playwright or no ``chromium``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.video.synthetic import ClipSpec, make_clip
from tests.app.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    START_S,
    VIEWPORT,
    _free_port,
    _healthy,
    _log_tail,
    settled,
    sync_api,
)

expect = sync_api.expect
pytestmark = pytest.mark.browser

#: (URL path, sidebar link and h1 title) of each st.Page in app/streamlit_app.py (the default page is at / only:
#: Streamlit answers its own url_path, /dashboard, with "Page not found")
PAGES = (("", "Dashboard"), ("queue", "Batch queue"), ("style_lab", "Style Lab"), ("trainer", "Trainer"),
         ("settings", "Settings"))
SETTINGS_TABS = ("Hardware", "Presets", "Folders", "Storage")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
#: Streamlit's centred layout caps its content at 736 px; the studio's wide one fills a 1280 px window
WIDE_PX = 900
STEP_MS, JOB_S = 60_000, 120


@dataclass
class Studio:
    """The launcher started by the fixture; :meth:`restart` stops it and starts it again on the same port."""

    home: Path
    log: Path
    port: int
    api_port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "VP_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.studio", "--port", str(self.port), "--no-sample",
                 "--api-port", str(self.api_port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_S
        while not _healthy(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the studio did not come up at {self.url} (exit {self.proc.poll()}):\n"
                            f"{_log_tail(self.log)}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to the launcher, as a user's Ctrl-C or a service manager stops it; its children go with it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # whatever of its group outlived it (test_browser fails that)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 30
        while _healthy(self.url) and time.monotonic() < deadline:  # Streamlit gone: the port is free again
            time.sleep(0.2)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    root = tmp_path_factory.mktemp("every_page")
    home = root / "home"
    (home / "media").mkdir(parents=True)
    # one tiny clip, so the pages that pick a clip draw their previews and pickers, not only "choose a clip"
    make_clip(home / "media" / "tiny.mp4", ClipSpec(width=160, height=96, frames=24, fps=Fraction(24), audio=True,
                                                     seed=3))
    studio = Studio(home, root / "studio.log", _free_port(), _free_port())
    studio.start()
    try:
        yield studio
    finally:
        studio.stop()


def base_probe(url: str) -> bool:
    """Streamlit's own probe for its base path (streamlit/streamlit#7074, open): a page opened by its URL,
    ``/queue``, first asks ``/queue/_stcore/health`` and ``/queue/_stcore/host-config`` (404), then the root's.
    Nothing the studio can change short of patching Streamlit's bundle; these two, for our pages, are allowed."""
    parts = urlsplit(url).path.strip("/").split("/")
    return (len(parts) == 3 and parts[0] in {path for path, _ in PAGES if path}
            and parts[1:] in (["_stcore", "health"], ["_stcore", "host-config"]))


def _is_media(url: str) -> bool:
    """A file Streamlit serves for a page's element (video, image, download)."""
    return urlsplit(url).path.startswith("/media/")


@dataclass
class Watch:
    """What a tab did that an offline studio must not: console errors, failed or refused requests, requests
    to another host."""

    errors: list[str] = field(default_factory=list)
    media_gone: set[str] = field(default_factory=set)  # /media/ files that answered 404 (see check_shown)

    def attach(self, page: sync_api.Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on("request", self._request)
        page.on("response", self._response)

    def _response(self, response: sync_api.Response) -> None:
        if response.status < 400 or base_probe(response.url):
            return
        if response.status == 404 and _is_media(response.url):
            self.media_gone.add(response.url)  # an error only while the page shows it: check_shown
            return
        self.errors.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def check_shown(self, page: sync_api.Page) -> None:
        """A media file that answered 404 is an error where the page still shows it. Streamlit drops a page's
        media files when its script reruns, and a video of the page just left can still ask for its file as
        it goes (seen once in CI: the Batch queue's finished render, 404 after the next page opened)."""
        shown = page.evaluate(
            "() => Array.from(document.querySelectorAll('video, audio, img, source'))"
            ".map(e => e.currentSrc || e.src || '')")
        self.errors.extend(f"HTTP 404 for media the page shows: {url}" for url in shown if url in self.media_gone)

    def _failed(self, request: sync_api.Request) -> None:
        """A failed request, except a video's download that the page itself cancelled (ERR_ABORTED) when it
        moved on before the video had loaded: Streamlit's video element fetches ``/media/<hash>.mp4`` and
        aborts the fetch as it unmounts. Nothing failed there."""
        if urlsplit(request.url).path.startswith("/media/") and "ERR_ABORTED" in (request.failure or ""):
            return
        self.errors.append(f"request failed: {request.method} {request.url} ({request.resource_type}): "
                           f"{request.failure}")

    def _console(self, message: sync_api.ConsoleMessage) -> None:
        where = message.location.get("url", "")
        if message.type == "error" and not (message.text.startswith("Failed to load resource: the server responded "
                                                                    "with a status of 404")
                                            and (base_probe(where) or _is_media(where))):
            self.errors.append(f"console error: {message.text} ({where})")

    def _request(self, request: sync_api.Request) -> None:
        url = urlsplit(request.url)
        if url.scheme not in ("data", "blob") and url.hostname not in LOCAL_HOSTS:
            self.errors.append(f"request leaving the machine: {request.method} {request.url}")


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def opened(page: sync_api.Page, title: str) -> None:
    """The page shows the studio's own navigation (every page by its title, nothing else) and its h1."""
    nav = page.get_by_test_id("stSidebarNav")
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible(timeout=STEP_MS)
    for _, name in PAGES:
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(nav.get_by_role("link")).to_have_count(len(PAGES))  # not Streamlit's fallback list of files
    settled(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    width = page.get_by_test_id("stMainBlockContainer").bounding_box()["width"]
    assert width > WIDE_PX, f"{page.url}: content {width:.0f} px wide: the centred layout, not the studio's wide one"


def server_tracebacks(studio: Studio) -> str:
    """The studio's log (every start) when it holds a traceback, else the empty string."""
    text = studio.log.read_text(errors="replace")
    return text if "Traceback" in text else ""


def test_direct_links_after_a_restart(studio: Studio, browser: sync_api.Browser) -> None:
    """Each page's URL opened first thing after the studio restarts, and a tab left open across a restart."""
    left_open = browser.new_page(viewport=VIEWPORT)
    left_open.goto(f"{studio.url}/style_lab")
    opened(left_open, "Style Lab")
    studio.restart()
    watch = Watch()
    for path, title in PAGES:
        tab = browser.new_page(viewport=VIEWPORT)
        watch.attach(tab)
        tab.goto(f"{studio.url}/{path}")
        opened(tab, title)
        watch.check_shown(tab)
        tab.close()
    left_open.reload()
    opened(left_open, "Style Lab")
    left_open.close()
    assert not watch.errors, "\n".join(watch.errors)


@pytest.fixture(scope="module")
def rendered(studio: Studio) -> int:
    """A finished render of the tiny clip, so the Batch queue draws a done job: its video and charts."""
    from app.actions import queue_render
    from core.studio.queue import JobQueue

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VP_HOME", str(studio.home))
        queue = JobQueue()
        job_id = queue_render(queue, studio.home / "media" / "tiny.mp4", "pencil", "balanced")
        deadline = time.monotonic() + JOB_S
        while (job := queue.get(job_id)).state not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.3)
    assert job.state == "done", f"job {job_id} is {job.state}: {job.error}\n{_log_tail(studio.log)}"
    return job_id


def test_every_page_and_tab_is_clean(studio: Studio, browser: sync_api.Browser, rendered: int) -> None:
    watch = Watch()
    tab = browser.new_page(viewport=VIEWPORT)
    watch.attach(tab)
    tab.goto(studio.url)
    opened(tab, "Dashboard")
    watch.check_shown(tab)
    for _, title in PAGES[1:]:
        tab.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
        opened(tab, title)
        watch.check_shown(tab)
    for name in SETTINGS_TABS:
        tab.get_by_role("tab", name=name).click()
        expect(tab.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
        settled(tab)
        expect(tab.get_by_test_id("stException")).to_have_count(0)
        watch.check_shown(tab)
    for path, title in PAGES:  # and each by its URL in the same tab (a reload, a bookmark)
        tab.goto(f"{studio.url}/{path}")
        opened(tab, title)
        watch.check_shown(tab)
    tab.wait_for_timeout(500)  # late console messages of the last page
    watch.check_shown(tab)
    tab.close()
    logged = server_tracebacks(studio)  # the whole log: the direct links' runs too
    assert not watch.errors and not logged, "\n".join([*watch.errors, logged[-6000:]])


def test_clean_up_says_what_goes_and_asks_first(studio: Studio, browser: sync_api.Browser) -> None:
    """Settings > Storage > Clean up now: counts and sizes what is due, deletes only once confirmed."""
    old = time.time() - 400 * 86400  # older than the uploads' default retention (30 days)
    due = studio.home / "uploads" / "0123abcd" / "Old Take.mp4"
    due.parent.mkdir(parents=True)
    due.write_bytes(b"x" * 3 * 2**20)
    os.utime(due, (old, old))
    tab = browser.new_page(viewport=VIEWPORT)
    tab.goto(f"{studio.url}/settings")
    opened(tab, "Settings")
    tab.get_by_role("tab", name="Storage").click()
    for answer in ("Cancel", "Delete 1 item"):
        tab.get_by_role("button", name="Clean up now").click()
        expect(tab.get_by_text("This deletes 1 item (3.0 MB)", exact=False)).to_be_visible()
        assert due.is_file()  # asked, not yet done
        tab.get_by_role("button", name=answer, exact=True).click()
        expect(tab.get_by_text("This deletes", exact=False)).to_have_count(0)
        settled(tab)
    expect(tab.get_by_text("removed 1 item (3.0 MB)", exact=False)).to_be_visible()
    assert not due.exists() and not due.parent.exists()
    tab.close()
    assert not server_tracebacks(studio), server_tracebacks(studio)[-6000:]
