"""Batch queue: every job with its state and progress, live; pause, resume, reorder, cancel, retry; play,
download and inspect a finished render."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from app import components as ui
from app.events import render_metrics
from app.plots import render_metrics_figure, shots_figure, stages_figure
from core.quality.shots import SCORE_NAMES
from core.render import live
from core.render.workdir import work_root
from core.studio.advice import display_name
from core.studio.queue import Job

st.title("Batch queue")
queue = ui.job_queue()
if queue is None:
    st.stop()


def _model(job: Job) -> str:
    """The exact model version a job used (its result), else what it asks for ("sketch" = the active one)."""
    used = (job.result or {}).get("model") if isinstance(job.result, dict) else None
    asked = (job.spec.get("sets") or {}).get("model") if job.kind == "render" else job.spec.get("base")
    return str(used or asked or "")


def _status(job: Job) -> str:
    """One readable line: "running · render 42% · 12.3 fps · ETA 00:01:10", "done in 12.3 s", "failed"."""
    if job.state == "running":
        parts = [f"{job.stage} {job.progress * 100:.0f}%" if job.stage else f"{job.progress * 100:.0f}%"]
        parts += [f"{job.fps:.1f} fps"] if job.fps else []
        parts += [f"ETA {_eta(job.eta_s)}"] if job.eta_s is not None else []
        return " · ".join(["running", *parts])
    if job.state == "done":
        wall = (job.result or {}).get("wall_seconds")
        return f"done in {wall:.1f} s" if isinstance(wall, int | float) else "done"
    extra = job.message if job.message and job.message != job.state and job.state not in ("failed",) else ""
    return " · ".join(p for p in (job.state, extra) if p)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return time.strftime("%H:%M:%S", time.gmtime(max(0.0, seconds)))


@st.fragment(run_every="2s")
def job_table() -> None:
    jobs = queue.list()
    if not jobs:
        st.info("No jobs yet: queue a render from the Dashboard.")
        return
    counts = {s: sum(j.state == s for j in jobs) for s in ("queued", "running", "paused", "done", "failed")}
    st.caption(" · ".join(f"{n} {s}" for s, n in counts.items()))
    st.dataframe(
        [{"id": j.id, "kind": j.kind, "state": j.state, "progress": float(j.progress or 0.0),
          "fps": f"{j.fps:.1f}" if j.fps else "", "ETA": _eta(j.eta_s), "stage": j.stage or "",
          "input": display_name(j.spec), "style": j.spec.get("style", j.spec.get("base", "")),
          "model": _model(j), "message": j.message or j.error or ""}
         for j in jobs],
        hide_index=True, width="stretch", height=min(420, 38 + 35 * len(jobs)),
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                   format="percent")})


job_table()

jobs = queue.list()
if not jobs:
    st.stop()
ids = [j.id for j in jobs]
running = [j.id for j in jobs if j.state == "running"]
opened = running[0] if running else max(ids)  # the job being watched, else the newest: not always job #1
job_id = st.selectbox("Job", ids, index=ids.index(opened), key="queue.job",
                      format_func=lambda i: next(f"#{j.id} {j.kind} · {display_name(j.spec) or j.kind} · {j.state}"
                                                 for j in jobs if j.id == i))
job = queue.get(job_id)

actions = st.columns(7)
with ui.shown_errors():
    if actions[0].button("Pause", key="queue.pause", disabled=job.state not in ("queued", "running")):
        job = queue.pause(job.id)
    if actions[1].button("Resume", key="queue.resume", disabled=job.state != "paused"):
        job = queue.resume(job.id)
    if actions[2].button("Cancel", key="queue.cancel", disabled=job.state in ("done", "failed", "cancelled")):
        job = queue.cancel(job.id)
    if actions[3].button("Retry", key="queue.retry", disabled=job.state not in ("failed", "cancelled")):
        job = queue.retry(job.id)
    pending = [j.id for j in jobs if j.state in ("queued", "paused")]
    movable = job.state in ("queued", "paused") and job.id in pending
    at = pending.index(job.id) if movable else -1
    if actions[4].button("Top", key="queue.top", disabled=at <= 0):
        job = queue.move(job.id, pending[0])
    if actions[5].button("Up", key="queue.up", disabled=at <= 0):
        job = queue.move(job.id, pending[at - 1])
    if actions[6].button("Down", key="queue.down", disabled=not movable or at >= len(pending) - 1):
        job = queue.move(job.id, pending[at + 2] if at + 2 < len(pending) else None)

st.progress(float(job.progress or 0.0), text=_status(job))
if model := _model(job):
    st.caption(f"model: {model}")
if job.error:
    ui.failure(job, queue.advice(job.id))



@st.fragment(run_every="2s")
def live_frame(job_id: int, folder: str) -> None:
    """The running render's latest finished frame, refreshed (core.render.live): a look before it is done."""
    running = queue.get(job_id).state == "running"
    shown = live.latest(folder)
    if shown is not None:
        st.image(shown.jpeg, caption=f"live: {shown.seconds:.1f} s into the video (written {shown.age_s:.0f} s ago)",
                 width="stretch")
    elif running:
        st.caption("live: the first frame shows once the render starts encoding")
    part = live.finished(folder)
    if part is not None:
        st.caption(f"finished so far: {part.frames} of {part.total_frames} frames")


folder = work_root() / job.work_key if job.kind == "render" and job.work_key else None
# a running or queued render's folder may not exist yet (it is made once the input is analysed): the live
# frame's fragment is shown anyway and finds it on a later refresh (only the fragments rerun on their own)
if folder is not None and job.state in ("running", "paused", "queued", "cancelled", "failed") and (
        folder.is_dir() or job.state in ("running", "queued")):
    live_frame(job.id, str(folder))
    with ui.shown_errors():
        keep = st.columns(2)
        if keep[0].button("Play the finished part", key="queue.play_part", disabled=live.finished(folder) is None):
            part = live.finished(folder)
            st.session_state["queue.part"] = (job.id, str(live.write_finished(
                part, job.spec["input"], folder / live.PREVIEW_NAME, audio=job.spec.get("audio", "all"),
                subtitles=job.spec.get("subtitles", "all"))))
        if keep[1].button("Cancel and keep the finished part", key="queue.keep_part",
                          disabled=job.state not in ("running", "paused", "queued")):
            kept = live.keep_partial(folder, job.spec["input"], job.spec["output"],
                                     audio=job.spec.get("audio", "all"), subtitles=job.spec.get("subtitles", "all"))
            job = queue.cancel(job.id)
            if kept is None:
                st.warning("No part was finished yet: nothing kept.")
            else:
                st.success(f"Kept the first {kept[1].frames} frames as {kept[0]}")
    shown_part = st.session_state.get("queue.part")
    if shown_part and shown_part[0] == job.id and Path(shown_part[1]).is_file():
        st.video(shown_part[1])

output = Path(job.output or job.spec.get("output") or "")
if job.kind == "render" and job.state == "done" and output.is_dir():  # an image sequence
    frames = sorted(output.glob("frame_*"))
    st.success(f"{len(frames)} frames in {output}" + (", with audio.wav" if (output / "audio.wav").is_file() else ""))
    if frames:
        import cv2

        middle = frames[len(frames) // 2]
        shown = cv2.imread(str(middle), cv2.IMREAD_COLOR)  # TIFF too, which browsers do not show
        if shown is not None:
            st.image(shown[..., ::-1], caption=f"{middle.name} (the middle frame)", width="stretch")
if job.kind == "render" and job.state == "done" and output.is_file():
    codec = str((job.result or {}).get("codec", ""))
    if codec in ("libx264", "h264_nvenc") or (not codec and output.suffix.lower() == ".mp4"):
        st.video(str(output))
    else:  # ProRes, DNxHR, H.265, FFV1: made for editors and players, not browsers
        st.caption(f"{codec or output.suffix} plays in an editor, not in a browser: download it")
    with open(output, "rb") as fh:
        st.download_button("Download", fh, file_name=output.name, key="queue.download")
    rows, summary, why = render_metrics(job.result)
    if rows:
        st.markdown(f"**Per-frame measures** ({len(rows)} frames measured)")
        st.plotly_chart(render_metrics_figure(rows), key="queue.metrics")
    else:
        st.caption(f"No per-frame measures: {why}.")
    perf = (job.result or {}).get("perf")
    if perf and perf.get("thread_ms"):
        st.markdown("**Where the time went**")
        st.plotly_chart(stages_figure(perf), key="queue.perf")
        st.caption(perf.get("advice", ""))
    if summary.get("mean"):
        st.markdown(f"**Measures over the render** ({summary.get('frames', '?')} frames measured)")
        st.dataframe([{"measure": k.replace("_", " "), "mean": summary["mean"][k],
                       "95th percentile": (summary.get("p95") or {}).get(k)} for k in sorted(summary["mean"])],
                     hide_index=True, key="queue.summary")
    shots = summary.get("shots") if summary and summary.get("shots") and "motion" in summary["shots"][0] else None
    source = Path(str(job.spec.get("input", "")))
    if shots is None and source.is_file() and st.button("Analyse shots", key="queue.analyse"):
        with ui.shown_errors():
            shots = ui.shot_analysis(str(source), ui.mtime(source))["shots"]
    if shots:
        st.plotly_chart(shots_figure(shots, SCORE_NAMES), key="queue.shots")
if job.kind == "autotune" and job.result and job.result.get("lines"):
    st.code("\n".join(job.result["lines"]))
if job.result:
    with st.expander("Result"):
        st.json(job.result)
