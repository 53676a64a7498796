"""The studio end to end in a real browser: Playwright drives Debian's ``chromium`` against
``python -m scripts.studio --no-sample`` (Streamlit plus its queue worker) on a free loopback port.

One user's session, in order: upload a clip on the Dashboard, preview it and queue a render; watch the
Batch queue until the worker has rendered it, play and download the output; rate an A/B pair in the
Style Lab and approve both outputs as training pairs; launch a one-epoch fine-tune on them in the Trainer
and activate the new version; open Settings. What the pages did is checked through ``core`` (the same
``VP_HOME``), and a full-page screenshot of each page goes to ``$VP_SCREENSHOTS`` (default: a tmp dir).

Skipped when Playwright or a ``chromium`` binary is missing (``.ci/run`` installs Debian's chromium).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from core.video.synthetic import ClipSpec, make_clip

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)", allow_module_level=True)

expect = sync_api.expect
pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
#: the machine may be small and busy: Streamlit reruns, renders and a fine-tune all take a while
START_S, STEP_MS, JOB_MS = 120, 60_000, 240_000
expect.set_options(timeout=STEP_MS)


@dataclass(frozen=True)
class Studio:
    url: str
    home: Path
    proc: subprocess.Popen
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> dict[int, str]:
    """Live processes whose parent is ``pid``: {pid: command line} (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return found


def _alive(pid: int, cmdline: str) -> bool:
    """Whether ``pid`` still runs ``cmdline`` (a zombie or a reused pid counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and now == cmdline


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _log_tail(log: Path, n: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.is_file() else ""


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """The studio as a user starts it, in a private VP_HOME; on teardown the launcher is terminated and
    its children (Streamlit and the worker) must be gone with it."""
    root = tmp_path_factory.mktemp("browser")
    home, log = root / "home", root / "studio.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # live frames twice a second (the studio's default is every 2 s), so a short render shows several
    env = {**os.environ, "VP_HOME": str(home), "PYTHONUNBUFFERED": "1", "VP_LIVE_EVERY": "0.5"}
    with open(log, "wb") as out:  # --no-sample: the uploaded clip is the only one, so every page picks it
        proc = subprocess.Popen([sys.executable, "-m", "scripts.studio", "--port", str(port), "--no-sample",
                                 "--api-port", str(_free_port())],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the studio did not come up at {url} (exit {proc.poll()}):\n{_log_tail(log)}")
            time.sleep(1)
        children = _children(proc.pid)
        assert any("scripts.cli worker" in c for c in children.values()), children
        assert any("streamlit" in c for c in children.values()), children
        yield Studio(url, home, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 30
    while (left := {p: c for p, c in children.items() if _alive(p, c)}) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:  # do not leave them behind for the next test, but fail: the launcher orphaned them
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"orphans after the launcher stopped: {left}\n{_log_tail(log)}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("VP_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(studio: Studio) -> Iterator[sync_api.Page]:
    """One browser tab for the whole session (the Style Lab keeps its A/B pair in the session state)."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            tab.set_default_timeout(STEP_MS)
            tab.goto(studio.url)
            expect(tab.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 frames of 320x180 at 24 fps with audio and a cut (so the Style Lab has a hard frame to offer)."""
    return make_clip(tmp_path_factory.mktemp("upload") / "My Clip (1).mp4",
                     ClipSpec(width=320, height=180, frames=48, fps=Fraction(24), audio=True, cut_at=24, gop=12,
                              seed=11))


@pytest.fixture
def home(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point this test's own core calls at the studio's VP_HOME."""
    monkeypatch.setenv("VP_HOME", str(studio.home))
    return studio.home


# ---------------------------------------------------------------------------------------------- helpers


def go(page: sync_api.Page, title: str) -> None:
    """Open a page from the sidebar and wait for its title."""
    page.get_by_role("navigation").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()


def choose(page: sync_api.Page, label: str, option: str, nth: int = 0) -> None:
    """Pick ``option`` in the ``nth`` selectbox called ``label``."""
    box = page.get_by_role("combobox", name=label, exact=True).nth(nth)
    for attempt in range(3):  # a script re-run can close the list just opened: open it again
        settled(page)
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=15_000)
            break
        except sync_api.TimeoutError:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    expect(box).to_have_value(option)


def settled(page: sync_api.Page) -> None:
    """Wait until Streamlit has finished the current script run (no running-man status widget)."""
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=JOB_MS)


def screenshot(page: sync_api.Page, folder: Path, name: str) -> None:
    """A full-page PNG of the current page: Streamlit scrolls inside its main area, so the viewport is made as
    tall as that content for the shot."""
    settled(page)
    page.wait_for_timeout(500)  # let images and charts paint
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stMainBlockContainer]')].map(e => e.scrollHeight), 0)")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(int(height) + 40, 4000))})
    try:
        page.wait_for_timeout(300)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)


def job_succeeded(job_id: int) -> Any:
    """The queue's job ``job_id``, failing the test with the worker's error unless it is done."""
    from core.studio.queue import JobQueue

    job = JobQueue().get(job_id)
    if job.state != "done":
        pytest.fail(f"job {job_id} ({job.kind}) is {job.state}: {job.error or job.message}")
    return job


def upload_name(clip: Path) -> str:
    """The name an upload keeps in the studio (core.studio.storage.store_upload): the user's own."""
    return clip.name


# ---------------------------------------------------------------------------------------------- the session


def test_dashboard_upload_preview_queue(page: sync_api.Page, clip: Path, home: Path, shots: Path) -> None:
    page.get_by_role("radiogroup", name="Input clip").get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(clip)
    expect(page.get_by_text(f"{upload_name(clip)}: 320x180, 48 frames")).to_be_visible()
    expect(page.get_by_role("combobox", name="Style", exact=True)).to_have_value("cartoon")
    expect(page.get_by_text("original | cartoon", exact=True)).to_be_visible()
    expect(page.get_by_role("main").get_by_role("img").first).to_be_visible()
    page.get_by_role("button", name="Queue render").click()
    expect(page.get_by_text("queued job 1: ", exact=False)).to_be_visible()
    expect(page.get_by_text("My Clip (1)_cartoon.mp4 (see Batch queue)", exact=False)).to_be_visible()
    screenshot(page, shots, "dashboard")

    from core.studio.queue import JobQueue

    jobs = JobQueue().list()
    assert [(j.kind, j.spec["style"]) for j in jobs] == [("render", "cartoon")]
    assert Path(jobs[0].spec["input"]).name == upload_name(clip)


def test_queue_render_done_plays_and_downloads(page: sync_api.Page, home: Path, shots: Path) -> None:
    go(page, "Batch queue")
    # the job table is a fragment that refreshes itself every 2 s while the worker renders
    done, failed = page.get_by_text("1 done", exact=False), page.get_by_text("1 failed", exact=False)
    expect(done.or_(failed)).to_be_visible(timeout=JOB_MS)
    job_succeeded(1)
    page.reload()  # the job's details (outside the fragment) show the state at the last full run
    expect(page.get_by_role("heading", name="Batch queue", level=1)).to_be_visible()
    job = page.get_by_role("combobox", name="Job", exact=True)
    expect(job).to_have_value("#1 render · My Clip (1).mp4 · done")  # the user's name, not a content hash
    expect(page.get_by_text("done in ", exact=False)).to_be_visible()

    video = page.locator("video")
    expect(video).to_be_visible()
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("v => v.currentTime > 0 && v.videoWidth === 320", arg=video.element_handle())
    download = page.get_by_role("button", name="Download", exact=True)
    expect(download).to_be_visible()
    with page.expect_download() as got:
        download.click()
    from core.studio.queue import JobQueue

    output = Path(JobQueue().get(1).output)
    assert got.value.suggested_filename == output.name == "My Clip (1)_cartoon.mp4"  # the user's name, kept
    assert Path(got.value.path()).read_bytes() == output.read_bytes()
    video.evaluate("v => v.pause()")
    screenshot(page, shots, "queue")


def _looped(src: Path, times: int, out: Path) -> Path:
    """``src`` played ``times`` times in one file: its packets copied again and again (no re-encoding), each
    pass shifted by its stream's span (first pts to the end of the last packet), so timestamps keep rising."""
    import av

    def packets(inp: av.container.InputContainer) -> Iterator[av.Packet]:
        return (p for p in inp.demux(*[s for s in inp.streams if s.type in ("video", "audio")]) if p.dts is not None)

    with av.open(str(src)) as inp:
        ends: dict[int, tuple[int, int]] = {}
        for p in packets(inp):
            lo, hi = ends.get(p.stream.index, (p.pts, p.pts))
            ends[p.stream.index] = (min(lo, p.pts), max(hi, p.pts + (p.duration or 0)))
    span = {i: hi - lo for i, (lo, hi) in ends.items()}
    with av.open(str(out), "w") as dst:
        for k in range(times):
            with av.open(str(src)) as inp:
                if k == 0:
                    streams = {i: dst.add_stream_from_template(inp.streams[i]) for i in span}
                for p in packets(inp):
                    shift = k * span[p.stream.index]
                    p.pts, p.dts = p.pts + shift, p.dts + shift
                    p.stream = streams[p.stream.index]
                    dst.mux(p)
    return out


def test_live_preview_while_rendering_then_keep_the_finished_part(page: sync_api.Page, home: Path,
                                                                  tmp_path: Path) -> None:
    """A running render shows its latest frame, refreshed (the image changes while it runs); cancelling it
    keeps the chunks finished from the start as a playable partial output beside the output."""
    from app.actions import queue_render
    from core.studio.queue import JobQueue
    from core.video.probe import count_frames

    # 20 s of generated video played 4 times (stream copies): a render long enough (~25 s) to still be running
    # when the page shows its live frame on a fast machine, for the cost of generating 480 frames
    take = make_clip(tmp_path / "take.mp4", ClipSpec(width=640, height=360, frames=480, fps=Fraction(24),
                                                     audio=True, gop=24, seed=12))
    long = _looped(take, 4, tmp_path / "Long Take.mp4")
    queue = JobQueue()
    job_id = queue_render(queue, long, "cartoon", "balanced", chunk_seconds=1.0, workers=1)
    deadline = time.monotonic() + JOB_MS / 1000
    while queue.get(job_id).state != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    go(page, "Batch queue")
    page.reload()  # the job picker opens on the running job at a full run
    expect(page.get_by_role("combobox", name="Job", exact=True)).to_have_value(
        f"#{job_id} render · Long Take.mp4 · running")
    # the live frame: the image whose caption starts "live: " (st.image: an stImage with an stImageCaption)
    live = page.get_by_test_id("stImage").filter(has=page.get_by_test_id("stImageCaption").filter(
        has_text="live: ")).locator("img")
    expect(live).to_be_visible(timeout=JOB_MS)
    first = live.get_attribute("src")
    page.wait_for_function(
        "src => { const c = [...document.querySelectorAll('[data-testid=stImage]')].find(e => "
        "(e.querySelector('[data-testid=stImageCaption]')?.textContent || '').startsWith('live: '));"
        " const i = c && c.querySelector('img'); return i && i.src !== src; }", arg=first, timeout=STEP_MS)
    expect(page.get_by_text("finished so far: ", exact=False)).to_be_visible(timeout=JOB_MS)
    settled(page)
    page.get_by_role("button", name="Cancel and keep the finished part").click()
    expect(page.get_by_text("Kept the first ", exact=False)).to_be_visible()
    kept = Path(queue.get(job_id).spec["output"]).with_name("Long Take_cartoon_partial.mp4")
    assert kept.is_file() and 0 < count_frames(kept) < 4 * 480
    deadline = time.monotonic() + JOB_MS / 1000
    while queue.get(job_id).state != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queue.get(job_id).state == "cancelled"


def test_a_failed_job_says_what_to_do_and_was_tried_once(page: sync_api.Page, home: Path, tmp_path: Path) -> None:
    from app.actions import queue_render
    from core.studio.queue import JobQueue

    good = make_clip(tmp_path / "good.mp4", ClipSpec(width=160, height=96, frames=24, audio=True))
    broken = tmp_path / "Broken Take.mp4"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 3])  # a copy cut short
    queue = JobQueue()
    job_id = queue_render(queue, broken, "pencil", "balanced")
    deadline = time.monotonic() + JOB_MS / 1000
    while queue.get(job_id).state not in ("failed", "done") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (queue.get(job_id).state, queue.get(job_id).attempts) == ("failed", 1)
    go(page, "Batch queue")
    page.reload()  # the picker opens on a running job if any (run alone, the upload's render may still run)
    choose(page, "Job", f"#{job_id} render · Broken Take.mp4 · failed")
    # in the job's alert (the table's message cell holds the same words, drawn on a canvas)
    alerts = page.get_by_test_id("stAlert")
    expect(alerts.filter(has_text="Broken Take.mp4 could not be read as a video")).to_be_visible()
    expect(alerts.filter(has_text="Re-export the file")).to_be_visible()
    expect(page.get_by_text("tried 1 time (not retried", exact=False)).to_be_visible()
    expect(page.get_by_text("Technical detail")).to_be_visible()


def test_style_lab_rate_and_approve(page: sync_api.Page, home: Path, shots: Path) -> None:
    go(page, "Style Lab")
    expect(page.get_by_role("combobox", name="Frame", exact=True)).to_be_visible()
    choose(page, "Style", "pencil", nth=0)
    choose(page, "Style", "none", nth=1)
    page.get_by_role("button", name="Render A and B").click()
    expect(page.get_by_text("A: pencil", exact=False)).to_be_visible()
    expect(page.get_by_text("B: none", exact=False)).to_be_visible()
    expect(page.locator("video")).to_be_visible()  # judged on motion: A | B in one video, in sync

    page.get_by_role("radiogroup", name="Better").get_by_text("A", exact=True).click()
    rating = page.get_by_role("slider", name="Rating of the better one (1-5)", exact=False)
    rating.focus()
    rating.press("ArrowRight")  # 3 -> 4
    expect(rating).to_have_value("4")
    page.get_by_label("Comment").fill("pencil keeps the edges")
    page.get_by_role("textbox", name="Rater").fill("Ana")
    page.get_by_role("button", name="Save rating").click()
    expect(page.get_by_text("saved feedback record 1")).to_be_visible()

    for side in ("A", "B"):  # fine-tuning needs two pairs: one to train on, one to validate
        page.get_by_role("radiogroup", name="Approve as a training pair").get_by_text(side, exact=True).click()
        page.get_by_role("button", name="Approve", exact=True).click()
        expect(page.get_by_text(f"approved fb000001-{side} into")).to_be_visible()
    screenshot(page, shots, "style_lab")

    from core.learn import feedback

    records = feedback.list_records()
    assert [(r.id, r.choice, r.rating, r.comment) for r in records] == [(1, "A", 4, "pencil keeps the edges")]
    assert [r.a.style for r in records] == ["pencil"] and [r.b.style for r in records] == ["none"]
    folder = feedback.pairs_folder()
    assert sorted(p.name for p in (folder / "targets").glob("*.png")) == ["fb000001-A.png", "fb000001-B.png"]


def test_trainer_fine_tune_and_activate(page: sync_api.Page, home: Path, shots: Path) -> None:
    """Issue 22: a fine-tune registers a candidate; the version a render by name uses stays what it was
    (for the base's own name: its active version) until Activate is pressed on the candidate's review, which
    shows it beside that version; the run picker follows the queue without a reload."""
    from core.errors import ConfigError
    from core.ml import registry

    registered = {e.name for e in registry.list_models() if e.weights_sha256}
    base = "sketch" if "sketch" in registered else "compact"  # a bundled starter model when there is one
    name = base if base in registered else f"{base}-e2e"  # a new version of the base: the case
    active_before = registry.info(name).active if name in registered else None

    go(page, "Trainer")
    expect(page.get_by_text("2 pairs in")).to_be_visible()
    choose(page, "Base model", base)
    page.get_by_role("textbox", name="New model's name").fill(name)
    page.get_by_role("textbox", name="New model's name").press("Enter")
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill("1")
    epochs.press("Enter")
    expect(epochs).to_have_value("1")
    settled(page)
    page.get_by_role("button", name="Launch training").click()
    expect(page.get_by_text("queued training job ", exact=False)).to_be_visible()
    from core.studio.queue import JobQueue

    train_id = max(j.id for j in JobQueue().list())  # jobs before it: the renders of the earlier tests
    expect(page.get_by_text(f"queued training job {train_id}")).to_be_visible()
    # the run's progress is a fragment refreshing every 3 s; the picker's label follows the queue's state
    expect(page.get_by_text("done · ", exact=False).or_(page.get_by_text("failed · ", exact=False))) \
        .to_be_visible(timeout=JOB_MS)
    job_succeeded(train_id)
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(f"#{train_id} {base} → {name} · done")
    expect(page.get_by_text("Gates and model card")).to_be_visible()
    spec = job_succeeded(train_id).result["model"]  # the version this run registered: a candidate
    assert spec.partition("@")[0] == name
    version = int(spec.partition("@")[2])
    assert registry.entry(spec).state == "candidate"
    assert registry.info(name).active == active_before  # the render by name is unchanged
    if active_before is None:
        with pytest.raises(ConfigError, match=f"{spec} is a candidate awaiting review"):
            registry.entry(name)

    # the review (no reload: the page reran when the run finished): the candidate beside the version in use
    expect(page.get_by_role("combobox", name="Candidate", exact=True)).to_have_value(spec)
    expect(page.get_by_text(f"{spec} (candidate)").first).to_be_visible()  # its held-out frame
    expect(page.get_by_text("first_val ", exact=False).first).to_be_visible()
    screenshot(page, shots, "trainer-review")
    assert registry.info(name).active == active_before
    page.get_by_role("button", name="Activate candidate", exact=True).click()
    expect(page.get_by_text(f"active: {spec}", exact=False)).to_be_visible()
    screenshot(page, shots, "trainer")

    assert registry.info(name).active == version and registry.entry(name).state is None
    entry = registry.entry(spec)
    assert entry.lineage["base"].partition("@")[0] == base and entry.lineage["epochs"] == 1


def test_settings_opens(page: sync_api.Page, shots: Path) -> None:
    go(page, "Settings")
    for tab in ("Hardware", "Presets", "Folders", "Storage"):
        expect(page.get_by_role("tab", name=tab)).to_be_visible()
    expect(page.get_by_text("CPU cores")).to_be_visible()
    screenshot(page, shots, "settings")
