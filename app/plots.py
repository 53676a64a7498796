"""Plotly figures for the pages: per-frame render metrics, training curves, shot analysis, SHAP bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: per-frame series worth a plot, with their axis titles; a time per frame may come under any of these keys
FRAME_SERIES = (("warping_error", "warping error"), ("ssim", "SSIM to input"))
TIME_KEYS = ("ms", "time_ms", "ms_per_frame", "seconds", "time_s")


def _time_ms(row: Mapping[str, Any]) -> float | None:
    for key in TIME_KEYS:
        v = row.get(key)
        if isinstance(v, (int, float)):
            return float(v) * (1000.0 if key in ("seconds", "time_s") else 1.0)
    return None


def render_metrics_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Warping error, SSIM (and time per frame, where the rows carry one) against the frame index, one panel
    each. The first frame of a shot has no warping error (nothing before it to warp): a gap, not a zero."""
    rows = sorted(rows, key=lambda r: r.get("index", 0))
    timed = any(_time_ms(r) is not None for r in rows)
    titles = [name for _, name in FRAME_SERIES] + (["time per frame (ms)"] if timed else [])
    fig = make_subplots(rows=len(titles), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=titles)
    x = [r.get("index", i) for i, r in enumerate(rows)]
    for i, (key, name) in enumerate(FRAME_SERIES, 1):
        fig.add_trace(go.Scatter(x=x, y=[r.get(key) for r in rows], mode="lines+markers", name=name,
                                 connectgaps=False), row=i, col=1)
    if timed:
        fig.add_trace(go.Scatter(x=x, y=[_time_ms(r) for r in rows], mode="lines", name="ms"), row=3, col=1)
    fig.update_layout(height=180 * len(titles) + 40, showlegend=False, margin={"l": 40, "r": 10, "t": 30, "b": 30})
    fig.update_xaxes(title_text="frame", row=len(titles), col=1)
    return fig


def loss_figure(epochs: Sequence[Mapping[str, float]]) -> go.Figure:
    """Training and validation loss per epoch."""
    x = [e["epoch"] for e in epochs]
    fig = go.Figure([go.Scatter(x=x, y=[e["train_loss"] for e in epochs], mode="lines+markers", name="train"),
                     go.Scatter(x=x, y=[e["val_loss"] for e in epochs], mode="lines+markers", name="validation")])
    fig.update_layout(height=320, xaxis_title="epoch", yaxis_title="loss", margin={"l": 40, "r": 10, "t": 20, "b": 30})
    return fig


def shots_figure(shots: Sequence[Mapping[str, Any]], scores: Sequence[str]) -> go.Figure:
    """The shot analysis: one bar group per shot (its frame range), one bar per score in [0, 1]."""
    labels = [f"{s['start']}-{s['end'] - 1} ({s.get('difficulty', '?')})" for s in shots]
    fig = go.Figure([go.Bar(name=k, x=labels, y=[s.get(k) for s in shots]) for k in scores])
    fig.update_layout(barmode="group", height=340, yaxis_range=[0, 1], xaxis_title="shot (frames)",
                      margin={"l": 40, "r": 10, "t": 20, "b": 30})
    return fig


def shap_figure(values: Mapping[str, float]) -> go.Figure:
    """Horizontal bars: each feature's push on the log-odds that A is preferred (positive: towards A)."""
    items = sorted(values.items(), key=lambda kv: abs(kv[1]))
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color=["#2a9d8f" if v >= 0 else "#e76f51" for _, v in items]))
    fig.update_layout(height=60 + 24 * len(items), xaxis_title="SHAP (log-odds towards A)",
                      margin={"l": 10, "r": 10, "t": 10, "b": 30})
    return fig


def stages_figure(perf: Mapping[str, Any]) -> go.Figure:
    """Horizontal bars: ms a frame each thread of the render's chunks was busy (the prepare pool's time per
    thread), the slowest one highlighted: where a render's time went, at a glance."""
    threads = perf.get("thread_ms") or {}
    slow = perf.get("bottleneck")
    names = list(threads)[::-1]
    fig = go.Figure(go.Bar(x=[threads[n] for n in names], y=names, orientation="h",
                           text=[f"{threads[n]:.1f}" for n in names], textposition="outside",
                           marker_color=["#e76f51" if n == slow else "#8ab17d" for n in names]))
    fig.update_layout(height=60 + 32 * len(names), xaxis_title="ms per frame (busy)",
                      margin={"l": 10, "r": 30, "t": 10, "b": 30})
    return fig
