"""The rows of the README's tables, one builder per benchmark section, in the README's order.

Each builder takes the whole report and returns only rows whose figures were measured; a missed target
keeps its row and says "(not met)". :data:`SUMMARY` lists the builders of the "what | measured | target"
table; the per-style and per-stage tables have their own builders below it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scripts.bench.figures import (
    ANALYSIS,
    API_LIST,
    BUNDLED,
    BUNDLED_FLICKER,
    BUSY,
    COMPACT,
    DASK,
    FINETUNE_DB,
    FLICKER,
    FLICKER_SSIM,
    FULL_LOOK,
    IDENTITY,
    IDENTITY_LONG,
    INT8,
    INT8_PSNR,
    LIVE,
    LUT_ONLY,
    MEMORY,
    METRICS,
    NEURAL_FLICKER,
    NEURAL_FLICKER_SSIM,
    NOT_MET,
    OF_LIMIT,
    ORT,
    PIPE_VS_SEQ,
    PREFERENCE_FIT,
    PREVIEW,
    QUEUE,
    RATE_PAIR,
    SCALING,
    SPEED_CLASSICAL,
    SPEED_PRESET,
    STAGES,
    FidelityGoal,
    Row,
    _cell,
    _finite,
    _fps,
    _num,
    _nums,
    _pct,
    _repeat,
    _sec,
    _x,
)

STYLE_LABELS = {"cinematic": "cinematic (default look: curve, bloom, grain, vignette)"}


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
            target = IDENTITY_LONG
            what = (f"the same on a {3 * frames}-frame clip" if frames else "the same on a 3x longer clip")
            what += f" (start-up costs amortised; medians of {repeat})" if repeat else " (start-up costs amortised)"
        pair = _nums(sec, "ffmpeg_fps", "ratio")
        if pair is None:
            rows.append((what, f"{_fps(ours)} fps (no `ffmpeg` on PATH: no ratio)",
                         target.text + " (not measured)" if target else ""))
            continue
        theirs, ratio = pair
        rows.append((what, f"{_fps(ours)} vs {_fps(theirs)} fps = **{_x(ratio)}**",
                     target.column(ratio) if target else ""))
    return rows


def _speed_rows(report: dict) -> list[Row]:
    """One row per resolution and preset: each style's ratio to FFmpeg's transcode of the same clip."""
    sec = _sec(report, "speed")
    rows: list[Row] = []
    repeat = _repeat(sec)
    medians = f"; medians of {repeat} rounds" if repeat else ""
    for key, label, target in (("720p", "balanced preset, 720p", SPEED_CLASSICAL),
                               ("1080p", "balanced preset, 1080p", SPEED_CLASSICAL),
                               ("720p_speed", "speed preset, 720p", SPEED_PRESET)):
        per_style = {s: v for s, v in _sec(sec, key).items() if isinstance(v, dict) and _num(v, "ratio") is not None}
        classical = {s: v for s, v in per_style.items() if s != "none"}
        if not classical:
            continue
        ff = _num(next(iter(classical.values())), "ffmpeg_fps")
        what = (f"{' / '.join(classical)} vs `ffmpeg -c:v libx264 -preset veryfast -crf 20` of the same clip, "
                f"{label} (whole renders{medians})")
        ratios = [v["ratio"] for v in classical.values()]
        measured = " / ".join(f"**{_x(r)}**" for r in ratios) + (f" (ffmpeg {_fps(ff)} fps)" if ff else "")
        rows.append((what, measured, target.column(*ratios)))
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


def _neural_flicker_rows(report: dict) -> list[Row]:
    """A row per model: the neural temporal mode's warping error vs the per-frame render, SSIM to it."""
    sec = _sec(report, "neural_flicker")
    rows: list[Row] = []
    for model, v in _sec(sec, "models").items():
        figs = _nums(v, "per_frame", "stable", "warping_ratio", "ssim")
        if figs is None:
            continue
        base, err, ratio, sim = figs
        clip = v.get("clip", sec.get("clip", "?"))
        where = f"{clip}, {sec.get('frames', '?')} frames at {sec.get('width', '?')} px"
        label = model.split(" on ")[0]
        hold = v.get("mean_hold")
        held = f", luma hold {hold:.2f} mean" if isinstance(hold, int | float) else ""
        if v.get("reference"):
            target = "(for comparison)"
        elif v.get("third_party"):
            target = NEURAL_FLICKER.column(ratio, extra_ok=sim >= NEURAL_FLICKER_SSIM)
        else:
            target = BUNDLED_FLICKER.column(ratio, extra_ok=sim >= FLICKER_SSIM)
        rows.append((f"flicker: neural temporal mode, model {_cell(label)}, {_cell(where)}",
                     f"{base:.2e} -> {err:.2e} = **{_x(ratio)}** at SSIM {sim:.3f}{held}", target))
    return rows


def _bundled_rows(report: dict) -> list[Row]:
    """A row per bundled model: fidelity to its teacher on held-out frames, sharpness, fps at 720p."""
    sec = _sec(report, "bundled")
    rows: list[Row] = []
    for name, v in _sec(sec, "models").items():
        figs = _nums(v, "psnr_db", "sharpness_vs_teacher", "sharpness_vs_input", "fps_720p")
        if figs is None:
            continue
        psnr, vs_teacher, vs_input, fps = figs
        target = BUNDLED.get(name, FidelityGoal()).text()
        verdict = "" if v.get("met") else NOT_MET
        rows.append((f"bundled model {_cell(name)}@{v.get('version', '?')} vs its teacher "
                     f"({_cell(str(v.get('teacher', '?')))}), {sec.get('frames', '?')} held-out frames",
                     f"**{psnr:.1f} dB**, sharpness {vs_teacher:.2f}x teacher / {vs_input:.2f}x input, "
                     f"{fps:.2f} fps 720p", target + verdict))
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
    pairs = {k: v for k, v in _sec(sec, "rate_pair_s").items() if isinstance(v, int | float)}
    if pairs:
        shown = " / ".join(f"{v:.2f}" for v in pairs.values())
        rows.append((f"Style Lab pair on motion at 720p (two 1 s clips rendered, measured, side by side), "
                     f"{' / '.join(_cell(k) for k in pairs)}", f"**{shown} s**", RATE_PAIR.column(*pairs.values())))
    fit = _num(sec, "preference_fit_500_s")
    if fit is not None:
        rows.append(("preference model fit on 500 ratings (model selection by cross-validation included)",
                     f"**{fit:.2f} s**", PREFERENCE_FIT.column(fit)))
    got = _sec(sec, "transfer")
    figs = _nums(got, "psnr_db", "seconds")
    if figs is not None:
        rows.append((f"fine-tune transfer: a LUT look learnt from {got.get('pairs', '?')} frames of "
                     f"{_cell(got.get('train', '?'))} (`look` net, default schedule), on {_cell(got.get('test', '?'))}",
                     f"**{figs[0]:.2f} dB** in {figs[1]:.0f} s", FINETUNE_DB.column(figs[0], extra_ok=figs[1] <= 300)))
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
    api = _num(sec, "api_list_200_ms")
    if api is not None:
        rows.append(("JSON API: `GET /jobs` with 200 jobs, over HTTP", f"**{api:.1f} ms**", API_LIST.column(api)))
    sizes = [(k, v) for k, v in _sec(sec, "live").items() if _nums(v, "ms", "share") is not None]
    if sizes:
        rows.append((f"live preview while rendering, one frame per chunk every 2 s, {' / '.join(k for k, _ in sizes)}",
                     " / ".join(f"**{v['share'] * 100:.2f} %** ({v['ms']:.1f} ms)" for _, v in sizes),
                     LIVE.column(*(v["share"] for _, v in sizes))))
    return rows


SUMMARY: tuple[Callable[[dict], list[Row]], ...] = (
    _identity_rows, _speed_rows, _lut_rows, _workers_rows, _dask_rows, _memory_rows, _neural_rows, _bundled_rows,
    _neural_flicker_rows, _gpu_rows, _loop_rows, _studio_rows)


# -- the per-style and per-stage tables: a row per style, "-" for a figure not measured --

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




def _profile_rows(report: dict) -> list[list[str]]:
    """The profile section: per classical style, its stage costs at the baseline commit (before) and here
    (after), CPU ms per frame, with their total; "-" for a part that was not measured."""
    sec = _sec(report, "profile")
    base = sec.get("baseline")
    rows = []
    for style, v in _sec(sec, "styles").items():
        if not isinstance(v, dict):
            continue
        for when in ("before", "after"):
            parts = _sec(v, when)
            cells = [_num(parts, k) for k in STAGES]
            if all(c is None for c in cells):
                continue
            label = f"{style}, before ({_cell(base)})" if when == "before" and isinstance(base, str) else \
                f"{style}, {'after' if 'before' in v else 'now'}"
            total = sum(c for c in cells if c is not None)
            rows.append([label, *(f"{c:.1f}" if c is not None else "-" for c in cells), f"**{total:.1f}**"])
    return rows
