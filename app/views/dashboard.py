"""Dashboard: pick a clip, a style, a preset and the style's parameters; preview one frame; queue the render."""

from __future__ import annotations

import streamlit as st

from app import components as ui
from app.actions import queue_render
from app.hardware import one_line
from app.wipe import wipe
from core.presets import list_presets
from core.video.writer import DELIVERIES
from stylizers import READY_STYLES, STYLIZERS

st.title("Dashboard")

left, right = st.columns([1, 2])
with left:
    clip = ui.media_picker("dash")
    style = st.selectbox("Style", list(STYLIZERS), index=list(STYLIZERS).index("cartoon"), key="dash.style",
                         format_func=lambda s: s if s in READY_STYLES else f"{s} (needs {STYLIZERS[s].requires})")
    st.caption(STYLIZERS[style].description)
    presets = list_presets()
    preset = st.selectbox("Preset", presets, index=presets.index("balanced") if "balanced" in presets else 0,
                          key="dash.preset")
    with st.expander("Style parameters", expanded=True), ui.shown_errors():
        sets = ui.style_params_form(style, preset, "dash.params")
    with st.expander("Output", expanded=False), ui.shown_errors():
        out_folder = ui.output_folder_picker("dash.out")
        delivery = st.selectbox("Delivery format", list(DELIVERIES), key="dash.out.format",
                                help="ProRes and DNxHR keep PCM audio; an image sequence is a folder of frames "
                                     "with audio.wav beside them")
        delivery_sets, delivery_ext = DELIVERIES[delivery]

with right:
    info = None
    if clip is not None:
        with ui.shown_errors():
            info = ui.probe_info(str(clip), ui.mtime(clip))
    if info is not None:
        st.caption(f"{clip.name}: {info.width}x{info.height}, {info.frame_count} frames, {info.duration:.2f} s")
        at = st.slider("Preview at (s)", 0.0, float(info.duration), min(1.0, float(info.duration) / 2),
                       step=0.04, key="dash.at")
        split = st.slider("Wipe: original | stylized", 0.0, 1.0, 0.5, step=0.01, key="dash.wipe")
        with ui.shown_errors():
            styled = ui.preview(str(clip), ui.mtime(clip), style, preset, tuple(sorted(sets.items())), at)
            original = ui.source_frame(str(clip), ui.mtime(clip), at)
            if original.shape == styled.shape:
                st.image(wipe(original, styled, split), caption=f"original | {style}", width="stretch")
            else:
                st.image([original, styled], caption=["original", style], width=360)
        if st.button("Queue render", type="primary", key="dash.queue"):
            queue = ui.job_queue()
            if queue is not None:
                with ui.shown_errors():
                    job_id = queue_render(queue, clip, style, preset, {**sets, **delivery_sets}, folder=out_folder,
                                          ext=delivery_ext)
                    st.success(f"queued job {job_id}: {queue.get(job_id).spec['output']} (see Batch queue)")
    else:
        st.info("Choose a clip to preview and render.")

with st.expander("Hardware"):
    st.write(one_line(ui.hardware()))
