"""Style Lab: render two variants of a clip's hardest frames (a short clip around the frame, or the frame
alone), compare them, rate, approve training pairs, and see what the preference model predicts and why."""

from __future__ import annotations

import streamlit as st

from app import components as ui
from app.actions import frame_seconds, record_rating, render_variant
from app.plots import shap_figure
from app.wipe import wipe
from core.learn import feedback
from core.learn import lab as lab_clip
from core.learn.preference import MIN_RATINGS, PreferenceModel, default_path, usable_ratings
from core.presets import list_presets
from stylizers import READY_STYLES, STYLIZERS

st.title("Style Lab")
lab = st.session_state.setdefault("lab", {})
for key, value in st.session_state.pop("lab.apply", {}).items():  # an applied proposal, before its widgets exist
    st.session_state[key] = value

clip = ui.media_picker("lab", "Clip")
if clip is None:
    st.stop()
info = ui.probe_info(str(clip), ui.mtime(clip))
k = st.slider("Frames to offer (worst first)", 2, 24, 8, key="lab.k")
with ui.shown_errors():
    picks = ui.worst_frames(str(clip), ui.mtime(clip), k)
if not picks:
    st.stop()
pick = st.selectbox("Frame", picks, key="lab.frame",
                    format_func=lambda p: f"frame {p.index}: {p.reason} ({p.score:.2f})")
seconds = frame_seconds(info, pick.index)
presets = list_presets()

cols = st.columns(2)
chosen = {}
styles = READY_STYLES + [s for s in STYLIZERS if s not in READY_STYLES]
#: a first comparison of two different variants, not of one with itself: cartoon against pencil
FIRST = {"A": "cartoon", "B": "pencil"}
for side, col in zip(("A", "B"), cols, strict=True):
    with col:
        st.subheader(f"Variant {side}")
        style = st.selectbox("Style", styles, key=f"lab.{side}.style",
                             index=styles.index(FIRST[side]) if FIRST[side] in styles else 0)
        preset = st.selectbox("Preset", presets, key=f"lab.{side}.preset",
                              index=presets.index("balanced") if "balanced" in presets else 0)
        with st.expander("Parameters"), ui.shown_errors():
            chosen[side] = (style, preset, ui.style_params_form(style, preset, f"lab.{side}.params"))
same = chosen.get("A") is not None and chosen["A"] == chosen.get("B")
if same:
    st.warning("A and B are the same variant: change a style, preset or parameter of one of them to compare.")

st.subheader("Auto-tuner: the next pair worth rating")
budget = st.slider("Candidates to try", 2, 24, 6, key="lab.budget")
if st.button("Propose a pair", key="lab.tune"):
    from app.actions import propose_pair

    with ui.shown_errors(), st.spinner("Searching parameters on the worst frames..."):
        proposal = propose_pair(clip, chosen["A"][0], chosen["A"][1], budget)
        lab["proposal"] = {**proposal, "style": chosen["A"][0], "preset": chosen["A"][1]}
if lab.get("proposal"):
    p = lab["proposal"]
    names = sorted(set(p["a"]) | set(p["b"]))
    st.dataframe([{"parameter": n, "A": ui.shown_value(p["a"].get(n)), "B": ui.shown_value(p["b"].get(n))}
                  for n in names], hide_index=True, key="lab.proposal")
    why = (f"the preference model gives P(A) = {p['p_a']:.2f}: the pair it is least sure about"
           if p["p_a"] is not None else "A flickers less than B (the base) within the style's floors")
    st.caption(f"{p['style']}, preset {p['preset']}; {why}")
    if st.button("Apply to A and B", key="lab.apply_proposal"):
        st.session_state["lab.apply"] = ui.proposal_widgets(p["style"], p["preset"], p["a"], p["b"])
        st.rerun()

motion = info.frame_count > 1 and st.radio(
    "Judge on", ["Motion: a short clip around the frame", "Still: the frame alone"], horizontal=True, key="lab.on",
    help="Flicker only shows on motion: a judgement made on a clip records its temporal measures (warping "
         "error, temporal SSIM, flicker of flat areas), which the preference model learns from.").startswith("Motion")
span = st.select_slider("Clip length (s)", [0.5, 1.0, 2.0], value=lab_clip.DEFAULT_SPAN,
                        key="lab.span") if motion else 0.0
if st.button("Render A and B", type="primary", key="lab.render", disabled=same):
    with ui.shown_errors(), st.spinner("Rendering both variants..."):
        if motion:
            pair = lab_clip.render_pair(clip, pick.index, chosen["A"], chosen["B"], span)
            lab.update(clip=str(clip), index=pick.index, source=pair[0].sources[pair[0].middle], record=None,
                       A=pair[0], B=pair[1], video=lab_clip.side_by_side(*pair))
        else:
            source = ui.source_frame(str(clip), ui.mtime(clip), seconds)
            lab.update(clip=str(clip), index=pick.index, source=source, record=None, video=None,
                       A=render_variant(clip, seconds, *chosen["A"], source=source),
                       B=render_variant(clip, seconds, *chosen["B"], source=source))

if lab.get("A") is None or lab.get("clip") != str(clip):
    st.info("Render the two variants to compare them.")
    st.stop()

a, b = lab["A"], lab["B"]
if lab.get("video") is not None:
    st.video(lab["video"], loop=True, autoplay=True, muted=True)
    st.caption(f"A (left): {a.style} {a.sets or ''} | B (right): {b.style} {b.sets or ''}, "
               f"{a.t_range[0]:.2f}-{a.t_range[1]:.2f} s, one video so both play in sync")
    st.dataframe({"measure": list(a.metrics), "A": [a.metrics[k] for k in a.metrics],
                  "B": [b.metrics.get(k) for k in a.metrics]}, hide_index=True)
view = st.radio("View (the offered frame)", ["Side by side", "Wipe"], horizontal=True, key="lab.view")
if view == "Wipe" and a.rgb.shape == b.rgb.shape:
    split = st.slider("Wipe: A | B", 0.0, 1.0, 0.5, 0.01, key="lab.split")
    st.image(wipe(a.rgb, b.rgb, split), caption=f"A ({a.style}) | B ({b.style})", width="stretch")
else:
    c1, c2 = st.columns(2)
    c1.image(a.rgb, caption=f"A: {a.style} {a.sets or ''}", width="stretch")
    c2.image(b.rgb, caption=f"B: {b.style} {b.sets or ''}", width="stretch")

with st.expander("Preference model"), ui.shown_errors():
    ratings = feedback.ab_dataset()
    have = usable_ratings(ratings)
    if have >= MIN_RATINGS and st.button(f"Fit from {have} ratings", key="lab.fit"):
        with st.spinner("Choosing and fitting the preference model..."):
            PreferenceModel.fit(ratings).save()
    path = default_path()
    if not path.is_file():
        st.info(f"not enough ratings yet ({have} of {MIN_RATINGS}): rate {MIN_RATINGS - have} more A/B pairs "
                "with a winner" if have < MIN_RATINGS else f"no preference model yet: {have} ratings can fit one")
    else:
        model = ui.preference_model(str(path), ui.mtime(path))
        rep = model.report
        c1, c2, c3 = st.columns(3)
        c1.metric("Held-out accuracy", f"{rep.holdout_accuracy:.2f}",
                  f"{rep.holdout_accuracy - rep.baseline_accuracy:+.2f} vs {rep.baseline} alone")
        c2.metric(f"{rep.baseline} alone", f"{rep.baseline_accuracy:.2f}")
        c3.metric("Ratings behind it", rep.n_ratings, f"+{have - rep.n_ratings} new" if have > rep.n_ratings else None)
        lines = rep.lines()
        st.caption(f"{lines[1]}  \n{lines[3]}")
        row = {"a_metrics": a.metrics, "b_metrics": b.metrics, "a_params": a.params, "b_params": b.params}
        pred = model.predict([row])
        low, high = pred.interval()
        st.metric("P(A preferred over B)", f"{pred.p[0]:.2f}")
        st.caption(f"95 % interval {low[0]:.2f} to {high[0]:.2f} (how far the ratings so far pin the model down)")
        st.plotly_chart(shap_figure(model.explain([row])[0]), key="lab.shap")

st.subheader("Your judgement")
with st.form("lab.rate"):
    choice = st.radio("Better", ["A", "B", "tie"], horizontal=True, key="lab.choice")
    rating = st.slider("Rating of the better one (1-5)", 1, 5, 3, key="lab.rating")
    comment = st.text_area("Comment", key="lab.comment", max_chars=feedback.MAX_TEXT)
    rater = st.text_input("Rater", key="lab.rater", placeholder="your name (kept with the rating)")
    if st.form_submit_button("Save rating", key="lab.save"):
        with ui.shown_errors():
            if lab.get("video") is not None:
                lab["record"] = lab_clip.record_pair(lab["clip"], a, b, choice=choice, rater=rater, rating=rating,
                                                     comment=comment)
            else:
                lab["record"] = record_rating(lab["clip"], lab["index"], a, b, lab["source"], choice=choice,
                                              rater=rater, rating=rating, comment=comment)
            st.success(f"saved feedback record {lab['record']}")

if lab.get("record") is not None:
    approve_side = st.radio("Approve as a training pair", ["A", "B"], horizontal=True, key="lab.approve_side")
    if st.button("Approve", key="lab.approve"):
        with ui.shown_errors():
            folder = feedback.approve(lab["record"], approve_side)
            st.success(f"approved {feedback.pair_stem(lab['record'], approve_side)} into {folder}")
