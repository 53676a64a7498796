"""Trainer: fine-tune a neural style on approved pairs as a queue job and watch its curves; review what it
registered (a candidate: its gates, held-out scores and frames beside the version in use) and activate or
discard it; the model registry, with roll back.

A finished run activates nothing (core.ml.registry's review gate): renders asking for ``model=NAME`` keep
the active version until someone presses Activate here (or runs ``models activate NAME@VERSION``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import components as ui
from app.actions import queue_train
from app.events import epoch_records
from app.plots import loss_figure
from core.errors import ConfigError
from core.learn import feedback
from core.ml import registry
from trainer import review
from trainer.arch import ARCHS, base_schedule, describe

FLASH = "train.flash"


def run_label(job: Any) -> str:
    """A run as the picker shows it: its id, base, the name it registers under, and its state in the queue."""
    target = job.spec.get("name") or f"{job.spec.get('base')}-ft-N"
    return f"#{job.id} {job.spec.get('base')} → {target} · {job.state}"


def decide(action: str, spec: str) -> None:
    """Activate or discard ``spec``, then redraw the whole page (the registry and review change), saying what
    happened in a line that survives the rerun."""
    name, _, version = spec.partition("@")
    with ui.shown_errors():
        before = registry.info(name).active
        if action == "activate":
            e = registry.activate(name, int(version))
            was = f"; roll back returns to {name}@{before}" if before not in (None, e.version) else ""
            st.session_state[FLASH] = f"active: {e.spec} (renders of model={name} use it from now on{was})"
        else:
            e = registry.discard(name, int(version))
            st.session_state[FLASH] = (f"rejected: {e.spec}. Renders of model={name} keep "
                                       f"{f'{name}@{before}' if before is not None else 'no active version'}; "
                                       f"its files stay in {e.path.parent} (delete them by hand to free the space)")
        st.rerun()


def now_is(spec: str) -> str:
    """Where a run's model stands in the registry now, read afresh (it changes after the run ended)."""
    name, _, version = spec.partition("@")
    try:
        state = registry.info(name).state(int(version))
    except (ConfigError, ValueError):
        return "no longer in the registry"
    return "now a candidate: review it under Review below" if state == registry.CANDIDATE else f"now {state}"


def beside(cand: registry.ModelEntry, compared: registry.ModelEntry | None, has_active: bool) -> str:
    """What the candidate is shown against, and what ``model=NAME`` does meanwhile."""
    if compared is None:
        return "nothing: trained from scratch, and no version of it is in use"
    if has_active:
        return f"**{compared.spec}**, the version `model={cand.name}` renders with until you activate"
    return (f"**{compared.spec}**, its base: `{cand.name}` has no active version yet, so `model={cand.name}` "
            f"is refused (with a line naming {cand.spec}) until one is activated")


@st.cache_data(show_spinner="running held-out frames through both models", max_entries=16)
def held_out_samples(rec: dict[str, Any], candidate: str, candidate_sha: str, compared: str | None,
                     compared_sha: str | None) -> list[review.Sample]:
    """Cached per (candidate, compared) file: the checksums key it, so a re-registered file is run again."""
    return review.samples(rec, candidate, compared)


def gates_table(rec: dict[str, Any], compared: registry.ModelEntry | None) -> None:
    fps = None if compared is None else (compared.spec, compared.measured_fps)
    st.dataframe([vars(g) for g in review.gates(rec, fps)], hide_index=True, width="stretch",
                 column_config={"gate": "gate", "value": "measured", "threshold": "bound", "result": "result"})
    st.caption(review.first_val_note(rec))


st.title("Trainer")
queue = ui.job_queue()
if FLASH in st.session_state:
    st.success(st.session_state.pop(FLASH))

entries: list[registry.ModelEntry] = []
infos: dict[str, registry.ModelInfo] = {}
with ui.shown_errors():  # a broken manifest: its one-line error, and the page without the registry
    listed = registry.list_models(candidates=True)
    infos = {n: registry.info(n) for n in sorted({e.name for e in listed})}
    entries = listed
trainable = [*sorted({e.name for e in entries if e.weights_sha256 and infos[e.name].active is not None}), *ARCHS]
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
    before = st.session_state.get("train.plan")  # the user has not set them (a reconnected browser brings
    for key, value in (("train.epochs", plan.epochs), ("train.lr", plan.lr)):  # its values but no plan: kept)
        if key not in st.session_state or (before is not None and st.session_state[key] == before[key]):
            st.session_state[key] = value
    st.session_state.update({"train.planned_for": base, "train.plan": {"train.epochs": plan.epochs,
                                                                       "train.lr": plan.lr}})
epochs = c2.number_input("Epochs", 1, 1000, key="train.epochs",
                         help="the default suits the base: enough steps to converge on a CPU in minutes")
lr = c2.number_input("Learning rate", 1e-6, 1.0, format="%.0e", key="train.lr")
int8 = c2.selectbox("int8", ["no", "try", "require"], key="train.int8",
                    help="try: keep int8 only if it is >= 32 dB PSNR vs fp32 and at least 1.1x as fast on this "
                         "machine, else fp32 (the card says why); require: else fail")
c2.caption("The run registers a candidate: nothing renders with it until you activate it under Review.")
if st.button("Launch training", type="primary", key="train.launch", disabled=queue is None):
    with ui.shown_errors():
        job_id = queue_train(queue, folder, base, epochs=int(epochs), lr=float(lr), patience=plan.patience,
                             name=name.strip() or None,
                             description=description, int8=int8, gpu=bool(ui.hardware().gpus))
        st.success(f"queued training job {job_id}")

train_jobs = [j for j in (queue.list() if queue is not None else []) if j.kind == "train"]
if train_jobs:
    st.subheader("Training runs")
    labels = {j.id: run_label(j) for j in train_jobs}
    job_id = st.selectbox("Run", list(reversed(labels)), key="train.job", format_func=labels.__getitem__)

    @st.fragment(run_every="3s")
    def curves() -> None:
        fresh = [j for j in queue.list() if j.kind == "train"]
        if {j.id: run_label(j) for j in fresh} != labels:  # a run changed state: the picker, the review and
            st.rerun(scope="app")  # the registry all follow the queue
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
            result = job.result
            st.markdown("**Gates and model card**")
            if result.get("model"):
                st.caption(f"registered {result['model']} as a candidate ({now_is(result['model'])}); "
                           f"run folder {result.get('run_folder', '?')}")
            if isinstance(result.get("review"), dict):
                gates_table(result["review"], None)
            if result.get("card"):
                with st.expander(f"Model card of {result.get('model', 'this run')}"):
                    st.markdown(result["card"])

    curves()

st.subheader("Review")
candidates = [e for i in infos.values() for e in i.candidates]
if not candidates:
    st.caption("No candidate awaiting review: a finished fine-tune registers one here.")
else:
    spec = st.selectbox("Candidate", [e.spec for e in reversed(candidates)], key="train.review_spec")
    cand = next(e for e in candidates if e.spec == spec)
    with ui.shown_errors():
        compared = review.reference(cand)
        st.markdown(f"**{cand.spec}** ({cand.style or 'no description'}) beside "
                    f"{beside(cand, compared, infos[cand.name].active is not None)}")
        rec = review.load(cand)
        if rec is None:
            st.caption(f"{cand.spec} has no review record (registered without one): its card is below.")
        else:
            st.dataframe(review.scores(rec, cand.spec), hide_index=True, width="stretch")
            gates_table(rec, compared)
            shots = held_out_samples(rec, cand.spec, cand.sha256, compared.spec if compared else None,
                                     compared.sha256 if compared else None)
            if not shots:
                st.caption(f"the held-out pairs ({', '.join(rec['held_out'])}) are no longer in {rec['pairs']}")
            for shot in shots:
                cols = st.columns(4)
                cols[0].image(shot.input, caption=f"{shot.stem}: input", width="stretch")
                if shot.reference is not None:
                    cols[1].image(shot.reference, caption=compared.spec, width="stretch")
                cols[2].image(shot.candidate, caption=f"{cand.spec} (candidate)", width="stretch")
                cols[3].image(shot.target, caption="target (approved)", width="stretch")
    if cand.card_path is not None:
        with st.expander(f"Model card of {cand.spec}"):
            st.markdown(cand.card_path.read_text())
    b1, b2 = st.columns(2)
    if b1.button("Activate candidate", type="primary", key="train.review.activate"):
        decide("activate", cand.spec)
    if b2.button("Discard candidate", key="train.review.discard"):
        decide("discard", cand.spec)
    st.caption(f"Activate: `model={cand.name}` renders with {cand.spec} from now on; Roll back returns to the "
               f"version active before. Discard: marked rejected (never activated by a roll back); nothing is "
               f"deleted, its files stay in {cand.path.parent}.")

st.subheader("Model registry")
if entries:
    st.dataframe([{"model": e.spec, "state": infos[e.name].state(e.version), "style": e.style,
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
        decide("activate", spec)
    roll = c2.selectbox("Model", [n for n, i in infos.items() if i.active is not None], key="train.rollback_name")
    if c2.button("Roll back", key="train.rollback", help="the version active before the last activation"):
        with ui.shown_errors():
            st.session_state[FLASH] = f"active: {registry.rollback(roll).spec}"
            st.rerun()
else:
    st.info("No models registered yet.")
