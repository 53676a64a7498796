"""Trainer: fine-tune a neural style on approved pairs as a queue job, watch its curves, read its gates and
card, activate or roll back a version; the model registry."""

from __future__ import annotations

import streamlit as st

from app import components as ui
from app.actions import queue_train
from app.events import epoch_records
from app.plots import loss_figure
from core.learn import feedback
from core.ml import registry
from trainer.arch import ARCHS, base_schedule, describe

st.title("Trainer")
queue = ui.job_queue()

with ui.shown_errors():
    entries = registry.list_models()
trainable = [*sorted({e.name for e in entries if e.weights_sha256}), *ARCHS]
pairs_root = feedback.pairs_folder().parent
pair_sets = sorted(p.name for p in pairs_root.iterdir() if p.is_dir()) if pairs_root.is_dir() else []

st.subheader("New fine-tune")
c1, c2 = st.columns(2)
base = c1.selectbox("Base model", trainable, key="train.base",
                    help=f"a model trained here (it has .npz weights), or an architecture to train from scratch: "
                         f"{describe()}")
pair_set = c1.selectbox("Approved pairs", pair_sets or ["approved"], key="train.pairs")
folder = feedback.pairs_folder(pair_set)
n_pairs = len(list((folder / "inputs").glob("*.png"))) if (folder / "inputs").is_dir() else 0
c1.caption(f"{n_pairs} pairs in {folder}")
scratch = base in ARCHS
name = c1.text_input("New model's name", key="train.name", placeholder="required" if scratch else f"{base}-ft-N",
                     help="a fine-tune is a model of its own; empty: <base>-ft-N, the first N free. The base's own "
                          "name registers a new version of the base instead")
description = c1.text_area("Its look, in your words", key="train.description", max_chars=2000,
                           help="the title of its model card and its style in the registry")
plan = base_schedule(base)
if st.session_state.get("train.planned_for") != base:  # a new base: its own default length and rate, where
    before = st.session_state.get("train.plan")  # the user has not set them
    for key, value in (("train.epochs", plan.epochs), ("train.lr", plan.lr)):
        if key not in st.session_state or before is None or st.session_state[key] == before[key]:
            st.session_state[key] = value
    st.session_state.update({"train.planned_for": base, "train.plan": {"train.epochs": plan.epochs,
                                                                       "train.lr": plan.lr}})
epochs = c2.number_input("Epochs", 1, 1000, key="train.epochs",
                         help="the default suits the base: enough steps to converge on a CPU in minutes")
lr = c2.number_input("Learning rate", 1e-6, 1.0, format="%.0e", key="train.lr")
int8 = c2.selectbox("int8", ["no", "try", "require"], key="train.int8",
                    help="try: keep int8 only if it is >= 32 dB PSNR vs fp32 and at least 1.1x as fast on this "
                         "machine, else fp32 (the card says why); require: else fail")
if st.button("Launch training", type="primary", key="train.launch", disabled=queue is None):
    with ui.shown_errors():
        job_id = queue_train(queue, folder, base, epochs=int(epochs), lr=float(lr), patience=plan.patience,
                             name=name.strip() or None,
                             description=description, int8=int8, gpu=bool(ui.hardware().gpus))
        st.success(f"queued training job {job_id}")

train_jobs = queue.list() if queue is not None else []
train_jobs = [j for j in train_jobs if j.kind == "train"]
if train_jobs:
    st.subheader("Training runs")
    job_id = st.selectbox("Run", [j.id for j in reversed(train_jobs)], key="train.job",
                          format_func=lambda i: next(f"#{j.id} {j.spec.get('base')} {j.state}"
                                                     for j in train_jobs if j.id == i))

    @st.fragment(run_every="3s")
    def curves() -> None:
        job = queue.get(job_id)
        st.progress(float(job.progress or 0.0), text=f"{job.state} · {job.message or ''}")
        epochs_seen = epoch_records(queue.events(job.id))
        if epochs_seen:
            st.plotly_chart(loss_figure(epochs_seen), key=f"train.loss.{job.id}")
        else:
            st.caption("no epochs reported yet")
        if job.error:
            st.error(job.error)
        if job.state == "done" and job.result:
            st.markdown("**Gates and model card**")
            if job.result.get("card"):
                st.markdown(job.result["card"])
            with st.expander("Everything the run reported"):
                st.json(job.result)

    curves()

st.subheader("Model registry")
if entries:
    active = {}
    for e in entries:
        with ui.shown_errors():
            active.setdefault(e.name, registry.info(e.name).active)
    st.dataframe([{"model": e.spec, "active": active.get(e.name) == e.version, "style": e.style,
                   "fps": e.measured_fps,
                   "input": e.convention.describe() if e.convention else "from the sidecar or the graph",
                   "base": (e.lineage or {}).get("base"),
                   "val_loss": (e.lineage or {}).get("val_loss"), "created": e.created, "licence": e.licence}
                  for e in entries], hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    spec = c1.selectbox("Version", [e.spec for e in entries], key="train.activate_spec")
    card = next(e for e in entries if e.spec == spec).card_path
    with c1.expander(f"Model card of {spec}"):
        st.markdown(card.read_text() if card is not None else "no card (registered without one)")
    if c1.button("Activate", key="train.activate"):
        with ui.shown_errors():
            name_, _, version = spec.partition("@")
            st.success(f"active: {registry.activate(name_, int(version)).spec}")
    roll = c2.selectbox("Model", sorted(active), key="train.rollback_name")
    if c2.button("Roll back", key="train.rollback"):
        with ui.shown_errors():
            st.success(f"active: {registry.rollback(roll).spec}")
else:
    st.info("No models registered yet.")
