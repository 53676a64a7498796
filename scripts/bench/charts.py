"""The Plotly figures of the HTML page: fps per style, the stage costs, and every ratio against its target.

plotly is imported only when a page is made, so the Markdown tables (and the README test) never load it.
"""

from __future__ import annotations

from typing import Any

from scripts.bench.figures import (
    ANALYSIS,
    BUSY,
    COMPACT,
    DASK,
    FLICKER,
    FLICKER_SSIM,
    FULL_LOOK,
    IDENTITY,
    INT8,
    INT8_PSNR,
    LUT_ONLY,
    MEMORY,
    METRICS,
    OF_LIMIT,
    ORT,
    PIPE_VS_SEQ,
    SCALING,
    STAGES,
    Target,
    _fps,
    _num,
    _sec,
)
from scripts.bench.rows import _worker_counts

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


