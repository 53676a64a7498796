"""core.studio.advice: a failed job says, by the user's file name, what went wrong and what to do; deterministic
failures are tried once; the technical line is kept for whoever digs."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from core.disk import disk_full_error
from core.errors import (
    BadModelError,
    ConfigError,
    DiskFullError,
    LutError,
    MediaNotFoundError,
    ModelError,
    RenderError,
    UnsupportedVideoError,
)
from core.studio.advice import Advice, advise, display_name
from core.studio.queue import JobQueue
from core.video.synthetic import ClipSpec, make_clip

NAME = "My Clip (1).mp4"


def spec_for(path: Path, **sets: str) -> dict:
    return {"input": str(path), "output": str(path.with_name("out.mp4")), "style": "pencil", "sets": sets}


def test_truncated_upload_fails_once_with_words_and_action(studio_home: Path, tmp_path: Path) -> None:
    """The end-to-end path: a worker runs a render of a cut-short file stored as an upload; the job fails at
    its first attempt and its advice names the user's file and says to re-export it."""
    from core.studio.storage import store_upload
    from core.studio.worker import run_worker

    good = make_clip(tmp_path / "good.mp4", ClipSpec(width=160, height=96, frames=24, audio=True))
    data = good.read_bytes()
    stored = store_upload(data[: len(data) // 3], NAME)
    assert stored.name == NAME and stored.parent.parent.name == "uploads"
    queue = JobQueue()
    job_id = queue.add("render", spec_for(stored))
    assert run_worker(cpu_slots=1, poll_s=0.05, once=True) == 1
    job = queue.get(job_id)
    assert (job.state, job.attempts) == ("failed", 1)
    advice = Advice.from_dict(queue.advice(job_id))
    assert advice is not None and advice.final and advice.file == NAME
    assert advice.summary.startswith(f"{NAME} could not be read as a video")
    assert "Re-export" in advice.action
    assert str(stored) in advice.technical  # the internal path stays, folded below in the page
    assert job.message == advice.summary and str(stored) in job.error
    assert [e.stage for e in queue.events(job_id)][-1] == "failed"


def test_a_job_retried_keeps_its_advice_per_attempt(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "studio.db")
    clip = make_clip(tmp_path / NAME, ClipSpec(width=160, height=96, frames=8))
    job_id = queue.add("render", spec_for(clip))
    queue.claim("w", cpu_slots=1)
    exc = RenderError(f"{clip}: chunk 0 failed: its worker process died (the file may be corrupt)")
    advice = advise(exc, queue.get(job_id).spec, final=False)
    job = queue.fail(job_id, "w", advice.technical, advice=advice.to_dict())
    assert job.state == "queued" and advice.summary in job.message and "attempt 1/3" in job.message
    assert queue.advice(job_id)["summary"] == advice.summary
    assert JobQueue(tmp_path / "studio.db").advice(job_id + 1) is None  # no such job: nothing recorded


@pytest.mark.parametrize(("exc", "summary", "action"), [
    (MediaNotFoundError("x: no such file"), "no longer where", "Put the file back"),
    (UnsupportedVideoError("x: no video stream"), "no video track", "Re-export"),
    (UnsupportedVideoError("x: empty file (0 bytes)"), "empty", "Re-export"),
    (LutError("look.cube: line 3: not a number"), "LUT cannot be used", "Pick another LUT"),
    (BadModelError("m.onnx: not an ONNX model"), "model cannot be used", "Pick another model"),
    (ConfigError("cartoon: edge_low (306) must not exceed edge_high (130)"), "setting", "Change the setting"),
    (ValueError("boom"), "internal error", "Press Retry"),
])
def test_words_for_each_kind_of_failure(tmp_path: Path, exc: Exception, summary: str, action: str) -> None:
    advice = advise(exc, spec_for(tmp_path / NAME), final=True)
    assert advice.summary.startswith(NAME) and summary in advice.summary
    assert advice.action.startswith(action)
    assert advice.technical in (str(exc), f"ValueError: {exc}")


def test_disk_full_says_how_much_to_free_and_where(tmp_path: Path) -> None:
    err = disk_full_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path, need_bytes=3 * 1024 ** 3)
    assert isinstance(err, DiskFullError) and err.mount and err.short_bytes == 3 * 1024 ** 3
    advice = advise(err, spec_for(tmp_path / NAME), final=True)
    assert f"Free 3.0 GiB on {err.mount}" in advice.action, advice.action


def test_out_of_memory_asks_for_a_smaller_tile(tmp_path: Path) -> None:
    exc = ModelError("model m.onnx: out of memory even at tile 128 on CPU: bad_alloc")
    advice = advise(exc, {**spec_for(tmp_path / NAME), "style": "neural", "sets": {"tile": "512"}}, final=False)
    assert "smaller tile (this job asked for 512 px)" in advice.action


def test_display_name_of_jobs_without_input() -> None:
    assert display_name({"pairs": "/x/pairs"}) == "pairs"
    assert display_name({}) == ""
    assert advise(ValueError("x"), {}, final=False).summary.startswith("the job")
