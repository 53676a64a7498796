"""Turn the benchmark's report into the README's performance tables and a self-contained Plotly page.

``python -m scripts.perf_report REPORT.json [--html OUT.html] [--readme README.md]``; with neither option the
Markdown tables go to stdout. Every figure shown comes from the report: a section the benchmark did not run
(missing or None) gives no rows and no chart, and a missed target says "(not met)" rather than being hidden.
The HTML page embeds plotly.js once, inline, so it opens offline (no CDN).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from core.atomic import write_bytes

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- perf:start -->"
END = "<!-- perf:end -->"
REPORT_PATH = "docs/perf/benchmark.json"
NOT_MET = " (not met)"
STAGES = ("decode", "stylize", "motion", "temporal", "measure", "encode")
STYLE_LABELS = {"cinematic": "cinematic (default look: curve, bloom, grain, vignette)"}


# -- reading the report leniently: a missing, None, non-numeric or non-finite figure is "not measured" --

def _sec(d: Any, key: str) -> dict:
    """The sub-dict ``d[key]``, or {} when the section is absent, None or malformed (so it gives no rows)."""
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, dict) else {}


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def _num(d: Any, key: str) -> float | None:
    """``d[key]`` as a finite float, else None: the tables never print a figure that was not measured."""
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if _finite(v) else None


def _nums(d: Any, *keys: str) -> tuple[float, ...] | None:
    """All of ``keys`` as floats, or None when any is missing (a row needs all its figures)."""
    vals = [_num(d, k) for k in keys]
    return None if any(v is None for v in vals) else tuple(vals)  # type: ignore[return-value]


# -- formatting: fps 1 decimal (2 below 1 fps, so a slow model never reads 0.0), ratios 2 decimals + "x" --

def _fps(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"


def _x(v: float) -> str:
    return f"{v:.2f}x"


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _g(v: float) -> str:
    """A target threshold: as short as it can be without losing digits (0.9, 3, 1.5)."""
    return f"{v:g}"


def _cell(text: str) -> str:
    """Free text (style names, the bottleneck) must not break the Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class Target:
    """A goal on one figure: ``>=`` or ``<=`` a threshold; ``text`` is what the target column says."""

    op: str
    value: float
    text: str

    def met(self, v: float) -> bool:
        return v >= self.value if self.op == ">=" else v <= self.value

    def column(self, *values: float, extra_ok: bool = True) -> str:
        """The target column: the goal, plus "(not met)" when any of ``values`` (or ``extra_ok``) misses it."""
        ok = extra_ok and all(self.met(v) for v in values)
        return self.text + ("" if ok else NOT_MET)


IDENTITY = Target(">=", 0.9, ">= 0.9x")
LUT_ONLY = Target(">=", 1.5, ">= 1.5x")
FULL_LOOK = Target(">=", 0.5, ">= 0.5x")
BUSY = Target(">=", 0.85, ">= 0.85")
SCALING = Target(">=", 1.0, ">= 1.0x")
DASK = Target(">=", 0.9, ">= 0.9x")
MEMORY = Target("<=", 1.1, "<= 1.1x")
ORT = Target(">=", 1.3, ">= 1.3x")
COMPACT = Target(">=", 3.0, ">= 3x")
INT8 = Target(">=", 1.5, ">= 1.5x at >= 32 dB")
INT8_PSNR = 32.0
METRICS = Target("<=", 0.15, "<= 15%")
ANALYSIS = Target("<=", 0.10, "<= 10%")
FLICKER = Target("<=", 0.25, "<= 0.25x at >= 0.95")
FLICKER_SSIM = 0.95
PREVIEW = Target("<=", 1.0, "<= 1 s")
QUEUE = Target("<=", 2.0, "<= 2 s")
OF_LIMIT = Target(">=", 0.9, ">= 90% of the machine limit")
PIPE_VS_SEQ = Target(">=", 1.0, ">= 1.0x (not slower)")

Row = tuple[str, str, str]


def _repeat(sec: dict) -> int | None:
    """How many alternating runs each median is of, when the section says and it is more than one."""
    r = sec.get("repeat")
    return r if isinstance(r, int) and not isinstance(r, bool) and r > 1 else None


# -- the "what | measured | target" rows, one function per section, in the README's order --

def _identity_rows(report: dict) -> list[Row]:
    rows: list[Row] = []
    frames = report.get("frames") if isinstance(report.get("frames"), int) else None
    for key in ("identity_vs_ffmpeg", "identity_vs_ffmpeg_3x"):
        sec = _sec(report, key)
        ours = _num(sec, "ours_fps")
        if ours is None:
            continue
        repeat = _repeat(sec)
        if key == "identity_vs_ffmpeg":
            what = "identity render vs `ffmpeg -c:v libx264 -preset veryfast -crf 20`, 720p"
            what += f", {frames} frames" if frames else ""
            what += f" (medians of {repeat})" if repeat else ""
            target = IDENTITY
        else:
            what = (f"the same on a {3 * frames}-frame clip" if frames else "the same on a 3x longer clip")
            what += f" (start-up costs amortised; medians of {repeat})" if repeat else " (start-up costs amortised)"
            target = None
        pair = _nums(sec, "ffmpeg_fps", "ratio")
        if pair is None:
            rows.append((what, f"{_fps(ours)} fps (no `ffmpeg` on PATH: no ratio)",
                         target.text + " (not measured)" if target else ""))
            continue
        theirs, ratio = pair
        rows.append((what, f"{_fps(ours)} vs {_fps(theirs)} fps = **{_x(ratio)}**",
                     target.column(ratio) if target else ""))
    return rows


def _lut_rows(report: dict) -> list[Row]:
    sec = _sec(report, "lut")
    rows: list[Row] = []
    ours = _num(sec, "lut_only_fps")
    repeat = _repeat(sec)
    medians = f" (medians of {repeat})" if repeat else ""
    what = f"cinematic LUT-only vs `ffmpeg -vf lut3d=...:interp=tetrahedral` + x264 veryfast, 720p{medians}"
    if ours is not None:
        pair = _nums(sec, "ffmpeg_lut3d_fps", "lut_only_ratio")
        if pair is None:
            rows.append((what, f"{_fps(ours)} fps (no `ffmpeg` on PATH: no ratio)", LUT_ONLY.text + " (not measured)"))
        else:
            rows.append((what, f"{_fps(ours)} vs {_fps(pair[0])} fps = **{_x(pair[1])}**", LUT_ONLY.column(pair[1])))
    look = _nums(sec, "full_look_fps", "full_look_ratio")
    if look is not None:
        rows.append(("cinematic full look (LUT + curve + bloom + grain + vignette) vs the same ffmpeg figure",
                     f"{_fps(look[0])} fps = **{_x(look[1])}**", FULL_LOOK.column(look[1])))
    return rows


def _worker_counts(sec: dict) -> dict[int, dict]:
    """``{workers: {"fps", "busy"}}``; JSON turns the benchmark's int keys into strings, so accept both."""
    out: dict[int, dict] = {}
    for k, v in sec.items():
        try:
            n = int(k)
        except (TypeError, ValueError):
            continue
        if isinstance(v, dict) and not isinstance(k, bool):
            out[n] = v
    return out


def _workers_rows(report: dict) -> list[Row]:
    sec = _sec(report, "workers")
    runs = _worker_counts(sec)
    if not runs:
        return []
    cores = report.get("cores")
    n = cores if isinstance(cores, int) and cores in runs else max(runs)
    style = sec.get("style")
    label = (f"{_cell(style)} 720p" if isinstance(style, str) and style else "720p") + ", one loop per chunk"
    rows: list[Row] = []
    busy = _num(runs[n], "busy")
    if busy is not None:
        rows.append((f"{label}, CPU time / (wall x {n} cores)", f"**{busy:.2f}**", BUSY.column(busy)))
    one, full = _num(runs.get(1), "fps"), _num(runs[n], "fps")
    if n != 1 and one is not None and full is not None and one > 0:
        ratio = full / one
        rows.append((f"{label}, {n} chunks at once vs 1", f"{_fps(full)} vs {_fps(one)} fps = **{_x(ratio)}**",
                     SCALING.column(ratio)))
    return rows


def _dask_rows(report: dict) -> list[Row]:
    sec = _sec(report, "dask")
    figs = _nums(sec, "dask_fps", "local_fps", "ratio")
    if figs is None:
        return []
    style = sec.get("style")
    label = f"{_cell(style)} 720p" if isinstance(style, str) and style else "720p"
    workers = sec.get("workers")
    on = f"Dask ({workers} workers)" if isinstance(workers, int) and not isinstance(workers, bool) else "Dask"
    return [(f"{label} on {on} vs the local process pool", f"{_fps(figs[0])} vs {_fps(figs[1])} fps = "
             f"**{_x(figs[2])}**", DASK.column(figs[2]))]


def _memory_rows(report: dict) -> list[Row]:
    figs = _nums(_sec(report, "memory"), "long_mib", "short_mib", "ratio")
    if figs is None:
        return []
    return [("peak RSS of the render's process tree, 10x longer clip vs short (640x360, pencil)",
             f"{figs[0]:.0f} vs {figs[1]:.0f} MiB = **{_x(figs[2])}**", MEMORY.column(figs[2]))]


def _neural_rows(report: dict) -> list[Row]:
    sec = _sec(report, "neural")
    if not sec:
        return []
    fps = _sec(sec, "fps_720p")
    rows: list[Row] = []
    ratio = _num(sec, "ort_vs_torch")
    if ratio is not None:
        pair = _nums(fps, "johnson", "torch")
        shown = f"{pair[0]:.2f} vs {pair[1]:.2f} fps = " if pair else ""
        rows.append(("neural: Johnson net, ONNX Runtime fp32 vs torch eager, 720p", f"{shown}**{_x(ratio)}**",
                     ORT.column(ratio)))
    ratio = _num(sec, "compact_vs_johnson")
    if ratio is not None:
        pair = _nums(fps, "compact", "johnson")
        shown = f"{pair[0]:.2f} vs {pair[1]:.2f} fps = " if pair else ""
        rows.append(("neural: compact (starter) net vs Johnson, both ORT fp32, 720p", f"{shown}**{_x(ratio)}**",
                     COMPACT.column(ratio)))
    ratio, psnr = _num(sec, "int8_vs_fp32"), _num(sec, "int8_psnr_db")
    if ratio is not None:
        at = f" at {psnr:.1f} dB PSNR" if psnr is not None else " (PSNR not measured)"
        rows.append(("neural: compact int8 (static QDQ, per-channel) vs fp32", f"**{_x(ratio)}**{at}",
                     INT8.column(ratio, extra_ok=psnr is not None and psnr >= INT8_PSNR)))
    cuda = _sec(sec, "cuda_1080p_fps")
    parts = [f"{name.capitalize() if name == 'johnson' else name} {_fps(v)} fps"
             for name in ("johnson", "compact") if (v := _num(cuda, name)) is not None]
    rows.append(("neural: CUDA EP 1080p with IO binding", ", ".join(parts) if parts else "not measured: no GPU", ""))
    return rows


def _gpu_rows(report: dict) -> list[Row]:
    sec = _sec(report, "gpu")
    if not sec:
        return []
    what = "GPU: neural (bundled sketch model) 1080p render; h264_nvenc vs libx264"
    if "skipped" in sec:
        return [(what, f"not measured: {_cell(str(sec['skipped']))}", "")]
    device = f"GPU ({_cell(str(sec.get('device', '?')))})"
    rows: list[Row] = []
    fps, busy = _num(sec, "neural_1080p_fps"), _num(sec, "neural_gpu_busy")
    if fps is not None:
        rows.append((f"{device}: neural (bundled sketch model) 1080p render, CUDA EP, frames batched",
                     f"**{_fps(fps)} fps**" + (f", GPU busy {_pct(busy)} (NVML)" if busy is not None else ""), ""))
    enc = _nums(_sec(sec, "encode_1080p_fps"), "h264_nvenc", "libx264")
    if enc is not None:
        rows.append((f"{device}: identity render h264_nvenc vs libx264, 1080p",
                     f"{_fps(enc[0])} vs {_fps(enc[1])} fps = **{_x(enc[0] / enc[1])}**", ""))
    elif "nvenc_skipped" in sec:
        rows.append((f"{device}: identity render h264_nvenc vs libx264, 1080p",
                     f"not measured: h264_nvenc does not open ({_cell(str(sec['nvenc_skipped']))})", ""))
    return rows


def _loop_rows(report: dict) -> list[Row]:
    sec = _sec(report, "loop")
    rows: list[Row] = []
    render = _num(sec, "render_cpu_ms")
    figs = _nums(sec, "metrics_ms", "metrics_ratio")
    if figs is not None:
        shown = f"{figs[0]:.1f} vs {render:.1f} ms" if render is not None else f"{figs[0]:.1f} ms"
        rows.append(("metrics while rendering (the render's default sampling) vs a 720p cartoon render, CPU per frame",
                     f"{shown} = **{_pct(figs[1])}**", METRICS.column(figs[1])))
    figs = _nums(sec, "analysis_ms", "analysis_ratio")
    if figs is not None:
        rows.append(("shot analysis (every 4th frame) vs the same render", f"{figs[0]:.1f} ms = **{_pct(figs[1])}**",
                     ANALYSIS.column(figs[1])))
    styles, ratios, sims = _per_style(_sec(sec, "flicker"), "warping_ratio", "ssim")
    if styles:
        rows.append((f"flicker: flow-stabilised warping error vs per-frame, real clip, {' / '.join(styles)}",
                     f"**{' / '.join(_x(r) for r in ratios)}** at SSIM {' / '.join(f'{s:.3f}' for s in sims)}",
                     FLICKER.column(*ratios, extra_ok=all(s >= FLICKER_SSIM for s in sims))))
    return rows


def _per_style(sec: dict, a: str, b: str) -> tuple[list[str], list[float], list[float]]:
    """Styles with both figures ``a`` and ``b`` measured, and those figures, in the report's order."""
    styles, xs, ys = [], [], []
    for style, v in sec.items():
        pair = _nums(v, a, b)
        if pair is not None:
            styles.append(_cell(style))
            xs.append(pair[0])
            ys.append(pair[1])
    return styles, xs, ys


def _studio_rows(report: dict) -> list[Row]:
    sec = _sec(report, "studio")
    rows: list[Row] = []
    styles, firsts, scrubs = _per_style(_sec(sec, "preview_1080p"), "first", "scrub")
    if styles:
        # bold marks the calls that miss the goal, so the row says which one did
        first = " / ".join(f"**{s:.2f}**" if not PREVIEW.met(s) else f"{s:.2f}" for s in firsts)
        lo, hi = min(scrubs), max(scrubs)
        scrub = f"{lo:.2f} s" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f} s"
        rows.append((f"one-frame preview, 1080p, {' / '.join(styles)} (first call; scrubbing)", f"{first} s; {scrub}",
                     PREVIEW.column(*firsts, *scrubs)))
    took = _num(sec, "queue_page_200_s")
    if took is not None:
        rows.append(("Batch queue page with 200 jobs, AppTest", f"**{took:.2f} s**", QUEUE.column(took)))
    return rows


SUMMARY: tuple[Callable[[dict], list[Row]], ...] = (
    _identity_rows, _lut_rows, _workers_rows, _dask_rows, _memory_rows, _neural_rows, _gpu_rows, _loop_rows,
    _studio_rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["|" + "|".join(f" {c} " if c else " " for c in row) + "|" for row in rows]
    return lines


def _styles_rows(report: dict) -> list[list[str]]:
    rows = []
    for style, v in _sec(report, "styles").items():
        if not isinstance(v, dict):
            continue
        cells = [_num(v, "720p_fps"), _num(v, "1080p_fps"), _num(v, "720p_busy")]
        if all(c is None for c in cells):
            continue
        fps720, fps1080, busy = cells
        rows.append([_cell(STYLE_LABELS.get(style, style)), _fps(fps720) if fps720 is not None else "-",
                     _fps(fps1080) if fps1080 is not None else "-", f"{busy:.2f}" if busy is not None else "-"])
    return rows


def _stage_rows(report: dict) -> list[list[str]]:
    rows = []
    for style, v in _sec(report, "stages").items():
        if not isinstance(v, dict):
            continue
        cost = _sec(v, "cost_ms")
        cells = [_cell(style)] + [f"{c:.1f}" if (c := _num(cost, s)) is not None else "-" for s in STAGES]
        limit, pipe, seq = _num(v, "limit_fps"), _num(v, "pipelined_fps"), _num(v, "sequential_fps")
        of_limit, vs_seq = _num(v, "of_limit"), _num(v, "pipelined_vs_sequential")
        cells.append(_fps(limit) if limit is not None else "-")
        pipe_cell = _fps(pipe) if pipe is not None else "-"
        if of_limit is not None:
            spread = _spread(v.get("of_limit_runs"), _pct)
            pipe_cell += f" ({_pct(of_limit)}{spread})" + ("" if OF_LIMIT.met(of_limit) else NOT_MET)
        cells.append(pipe_cell)
        seq_cell = _fps(seq) if seq is not None else "-"
        if vs_seq is not None:
            spread = _spread(v.get("pipelined_vs_sequential_runs"), _x)
            seq_cell += f" (default {_x(vs_seq)}{spread})" + ("" if PIPE_VS_SEQ.met(vs_seq) else NOT_MET)
        cells.append(seq_cell)
        bottleneck = v.get("bottleneck")
        cells.append(_cell(bottleneck) if isinstance(bottleneck, str) and bottleneck else "-")
        if any(c != "-" for c in cells[1:]):
            rows.append(cells)
    return rows


def _spread(runs: Any, fmt: Callable[[float], str]) -> str:
    """"; rounds LO-HI" from a section's per-round ratios, when there are several numbers; else ""."""
    if not isinstance(runs, list) or len(runs) < 2 or not all(_finite(r) for r in runs):
        return ""
    return f"; rounds {fmt(min(runs))}-{fmt(max(runs))}"


def _dates(report: dict) -> str | None:
    """The measuring dates of the sections present: one date, or "first to last"."""
    dates = sorted({d for d in _sec(report, "sections").values() if isinstance(d, str) and d})
    if not dates:
        return None
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


def _source(report: dict) -> str | None:
    """The input clip as the benchmark recorded it (``../shared/...``: the same README on every checkout)."""
    src = report.get("source")
    return src if isinstance(src, str) and src else None


def _provenance(report: dict) -> list[str]:
    parts = []
    if (dates := _dates(report)) is not None:
        parts.append(f"measured {dates}")
    cores = report.get("cores")
    if isinstance(cores, int) and not isinstance(cores, bool):
        parts.append(f"{cores} cores")
    if (src := _source(report)) is not None:
        parts.append(f"inputs: {src if src == 'synthetic' else f'`{src}`'}")
    return parts


def markdown(report: dict) -> str:
    """The README's performance tables, generated so the README cannot drift from the measured figures.

    A section missing from ``report`` gives no rows; a missed target is marked "(not met)".
    """
    parts = _provenance(report)
    lines = ["Generated by `python -m scripts.benchmark` from `" + REPORT_PATH + "`"
             + (f" ({', '.join(parts)})." if parts else ".")]
    summary = [row for section in SUMMARY for row in section(report)]
    for table in (
        _table(("what", "measured", "target"), summary),
        _table(("style", "720p fps", "1080p fps", "cores busy (720p)"), _styles_rows(report)),
        _table(("style", *STAGES[:-1], f"{STAGES[-1]} (CPU ms per frame)", "machine limit fps",
                "default (pipelined) fps (of limit)", "chunk-parallel fps", "bottleneck (from the stage costs)"),
               _stage_rows(report)),
    ):
        if table:
            lines += ["", *table]
    if _stage_rows(report):
        shots = {v.get("shot_frames") for v in _sec(report, "stages").values() if isinstance(v, dict)}
        shot = next(iter(shots)) if len(shots) == 1 and None not in shots else report.get("frames", "?")
        lines += ["", "Stages: CPU ms per frame in one loop (a fresh process); decode includes the frame features "
                  "the stabiliser needs (histogram signature, the flow's grey copy), measured on the decoder's "
                  "thread; motion (the flow, measured ahead on threads) and temporal (the blend, in order) are "
                  "the stabiliser's two halves; machine limit = cores / their sum. The fps columns are whole CLI "
                  f"runs, start-up included, of a {shot}-frame shot (the clip looped). Default: the render as a "
                  "user starts it: a style with temporal state renders one lane of chunks per two cores (each "
                  "chunk carrying the state the one before left), its frames prepared on two threads; a stateless "
                  "one (cinematic) a chunk per core, which is chunk-parallel itself, so its ratio only shows the "
                  "noise. Chunk-parallel: a lane per core, one loop each (`--pipeline off`). Each round measures the "
                  "costs, then renders both ways, the other way first every other round; a ratio is the median of "
                  "each round's own (its range over the rounds beside it: this machine's speed drifts by 10-20 % "
                  "within minutes). Targets: default fps "
                  f"{OF_LIMIT.text}; default vs chunk-parallel {PIPE_VS_SEQ.text}."]
    return "\n".join(lines) + "\n"


# -- the HTML page --

MET_COLOUR, MISSED_COLOUR = "#2e7d32", "#c62828"


def _ratio_points(report: dict) -> list[tuple[str, float, Target, bool]]:
    """(label, measured, target, met) for every figure with a target that is a ratio (the chart's bars)."""
    pts: list[tuple[str, float, Target, bool]] = []

    def add(label: str, v: float | None, t: Target, extra_ok: bool = True) -> None:
        if v is not None:
            pts.append((label, v, t, t.met(v) and extra_ok))

    add("identity vs ffmpeg", _num(_sec(report, "identity_vs_ffmpeg"), "ratio"), IDENTITY)
    lut = _sec(report, "lut")
    add("LUT-only vs ffmpeg lut3d", _num(lut, "lut_only_ratio"), LUT_ONLY)
    add("full look vs ffmpeg lut3d", _num(lut, "full_look_ratio"), FULL_LOOK)
    runs = _worker_counts(_sec(report, "workers"))
    if runs:
        cores = report.get("cores")
        n = cores if isinstance(cores, int) and cores in runs else max(runs)
        add(f"cores busy ({n} workers)", _num(runs[n], "busy"), BUSY)
        one, full = _num(runs.get(1), "fps"), _num(runs[n], "fps")
        if n != 1 and one and full is not None:
            add(f"{n} workers vs 1", full / one, SCALING)
    add("Dask vs local pool", _num(_sec(report, "dask"), "ratio"), DASK)
    add("memory, 10x longer clip", _num(_sec(report, "memory"), "ratio"), MEMORY)
    for style, v in _sec(report, "stages").items():
        add(f"{style}: default of machine limit", _num(v, "of_limit"), OF_LIMIT)
        add(f"{style}: default vs chunk-parallel", _num(v, "pipelined_vs_sequential"), PIPE_VS_SEQ)
    neural = _sec(report, "neural")
    add("neural: ORT vs torch", _num(neural, "ort_vs_torch"), ORT)
    add("neural: compact vs Johnson", _num(neural, "compact_vs_johnson"), COMPACT)
    psnr = _num(neural, "int8_psnr_db")
    add("neural: int8 vs fp32", _num(neural, "int8_vs_fp32"), INT8, psnr is not None and psnr >= INT8_PSNR)
    loop = _sec(report, "loop")
    add("metrics cost of render", _num(loop, "metrics_ratio"), METRICS)
    add("analysis cost of render", _num(loop, "analysis_ratio"), ANALYSIS)
    for style, v in _sec(loop, "flicker").items():
        ssim = _num(v, "ssim")
        add(f"flicker: {style}", _num(v, "warping_ratio"), FLICKER, ssim is not None and ssim >= FLICKER_SSIM)
    return pts


def _figures(report: dict) -> list[tuple[str, Any]]:
    """(id, figure) for each chart whose section is in the report."""
    import plotly.graph_objects as go

    figs: list[tuple[str, Any]] = []
    styles = {s: v for s, v in _sec(report, "styles").items() if isinstance(v, dict)}
    if styles:
        fig = go.Figure()
        for res in ("720p", "1080p"):
            names = [s for s in styles if _num(styles[s], f"{res}_fps") is not None]
            vals = [_num(styles[s], f"{res}_fps") for s in names]
            fig.add_bar(name=res, x=names, y=vals, text=[_fps(v) for v in vals], textposition="outside")
        fig.update_layout(title="Render fps per style (higher is better)", barmode="group", yaxis_title="fps")
        figs.append(("perf-styles", fig))
    stages = {s: v for s, v in _sec(report, "stages").items() if isinstance(v, dict)}
    if stages:
        fig = go.Figure()
        for stage in STAGES:
            vals = [_num(_sec(v, "cost_ms"), stage) for v in stages.values()]
            fig.add_bar(name=stage, x=list(stages), y=vals,
                        text=[f"{v:.1f}" if v is not None else "" for v in vals], textposition="inside")
        fig.update_layout(title="CPU ms per frame per stage (stacked)", barmode="stack", yaxis_title="CPU ms / frame")
        figs.append(("perf-stage-cost", fig))
        fig = go.Figure()
        for key, name in (("limit_fps", "machine limit"), ("pipelined_fps", "default (pipelined)"),
                          ("sequential_fps", "chunk-parallel")):
            vals = [_num(v, key) for v in stages.values()]
            fig.add_bar(name=name, x=list(stages), y=vals,
                        text=[_fps(v) if v is not None else "" for v in vals], textposition="outside")
        fig.update_layout(title="Machine limit vs default (pipelined) vs chunk-parallel fps", barmode="group",
                          yaxis_title="fps")
        figs.append(("perf-stage-fps", fig))
    pts = _ratio_points(report)
    if pts:
        # the target goes into the axis label, so the bar's own label never collides with the target mark
        labels = [f"{p[0]} [{p[2].text}]" for p in pts]
        top = max(max(p[1] for p in pts), max(p[2].value for p in pts))
        fig = go.Figure()
        fig.add_bar(name="measured", orientation="h", y=labels, x=[p[1] for p in pts], showlegend=False,
                    marker_color=[MET_COLOUR if p[3] else MISSED_COLOUR for p in pts],
                    text=[f"{p[1]:.2f}" + ("" if p[3] else " (not met)") for p in pts], textposition="outside",
                    cliponaxis=False)
        fig.add_scatter(name="target", mode="markers", y=labels, x=[p[2].value for p in pts],
                        marker={"symbol": "line-ns", "size": 22, "line": {"width": 3, "color": "black"}},
                        hovertext=[p[2].text for p in pts], hoverinfo="text+y")
        fig.update_layout(title="Ratios vs their targets (green: met, red: not met; black mark: target)",
                          yaxis={"autorange": "reversed"}, height=160 + 32 * len(pts), xaxis_title="ratio",
                          xaxis={"range": [0, top * 1.25]}, margin={"l": 380})
        figs.append(("perf-ratios", fig))
    return figs


def html(report: dict) -> str:
    """A self-contained page of the report's charts: plotly.js is inlined once so it works offline."""
    import plotly.io as pio

    parts = _provenance(report)
    header = "; ".join(escape(p.replace("`", "")) for p in parts) or "no provenance in the report"
    body = []
    for i, (div_id, fig) in enumerate(_figures(report)):
        # fixed div ids: the same report gives the same page, byte for byte
        body.append(pio.to_html(fig, full_html=False, include_plotlyjs=i == 0, div_id=div_id,
                                config={"displaylogo": False}))
    if not body:
        body.append("<p>The report has no sections to chart.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>Video Producer benchmark</title>\n"
            "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:1100px}</style>\n"
            "</head>\n<body>\n<header><h1>Video Producer benchmark</h1>\n"
            f"<p>{header}. Generated by <code>python -m scripts.perf_report</code> from "
            f"<code>{REPORT_PATH}</code>.</p></header>\n" + "\n".join(body) + "\n</body>\n</html>\n")


# -- the README --

def update_readme(readme: Path, report: dict) -> bool:
    """Rewrite the README between its perf markers (marker lines kept) so the tables match the report.

    Returns whether the file changed; writes atomically. Raises ValueError naming the file when the markers
    are missing, repeated or out of order, so a wrong README is never half-rewritten.
    """
    readme = Path(readme)
    raw = readme.read_bytes().decode("utf-8")
    nl = "\r\n" if "\r\n" in raw else "\n"
    lines = raw.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == START]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(f"{readme}: needs exactly one '{START}' line followed by one '{END}' line")
    s, e = starts[0], ends[0]
    start_line = lines[s] if lines[s].endswith(("\n", "\r")) else lines[s] + nl
    block = nl + markdown(report).replace("\n", nl) + nl
    new = "".join(lines[:s]) + start_line + block + "".join(lines[e:])
    if new == raw:
        return False
    write_bytes(readme, new.encode("utf-8"))
    return True


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: a bad path or file is one line on stderr and exit status 2, never a traceback."""
    ap = argparse.ArgumentParser(prog="python -m scripts.perf_report", description=__doc__.splitlines()[0])
    ap.add_argument("report", help="the benchmark's JSON (python -m scripts.benchmark --json ...)")
    ap.add_argument("--html", help="write the charts here as a self-contained HTML page")
    ap.add_argument("--readme", help="rewrite this README's section between the perf markers")
    args = ap.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"{ap.prog}: error: {msg}", file=sys.stderr)
        return 2

    try:
        report = _load(args.report)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot read {args.report}: {getattr(exc, 'strerror', None) or exc}")
    except ValueError as exc:  # json.JSONDecodeError is one
        return fail(f"{args.report} is not a benchmark report: {str(exc).splitlines()[0]}")
    if args.html:
        try:
            write_bytes(args.html, html(report).encode("utf-8"))
        except OSError as exc:
            return fail(f"cannot write {args.html}: {exc.strerror or exc}")
        print(f"wrote {args.html}")
    if args.readme:
        try:
            changed = update_readme(Path(args.readme), report)
        except (OSError, UnicodeDecodeError) as exc:
            return fail(f"cannot update {args.readme}: {getattr(exc, 'strerror', None) or exc}")
        except ValueError as exc:
            return fail(str(exc))
        print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    if not args.html and not args.readme:
        sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
