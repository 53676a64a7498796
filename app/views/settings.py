"""Settings: hardware, presets (view, edit with validation, save as custom), folders, storage and clean-up."""

from __future__ import annotations

import dataclasses

import streamlit as st
import yaml

from app import components as ui
from app.actions import in_use_paths
from core import disk
from core.config import schema, to_dict
from core.paths import studio_home
from core.presets import (
    BUNDLED_DIR,
    EncoderConfig,
    Preset,
    TemporalConfig,
    apply_sets,
    list_presets,
    save_preset,
    user_dir,
)
from core.studio import storage, watch
from core.video.reader import DECODERS
from stylizers import checked_preset


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


st.title("Settings")
hardware, presets, folders, store = st.tabs(["Hardware", "Presets", "Folders", "Storage"])

with hardware:
    hw = ui.hardware()
    if hw.gpus:
        st.dataframe([{"GPU": g.name, "VRAM used / total (GB)": f"{g.memory_used_mb / 1024:.1f} / "
                       f"{g.memory_total_mb / 1024:.1f}", "temperature (C)": g.temperature_c,
                       "utilisation (%)": g.utilisation_pct} for g in hw.gpus], hide_index=True)
    else:
        st.info(hw.gpu_note or "no NVIDIA GPU")
    st.write(f"NVENC: {'usable' if hw.nvenc is None else f'not usable ({hw.nvenc}); renders use libx264'}")
    st.write(f"NVDEC: {'usable' if hw.nvdec is None else f'not usable ({hw.nvdec}); renders decode on the CPU'}")
    c1, c2, c3 = st.columns(3)
    c1.metric("CPU cores", hw.cpu_count, help=f"load (1 min): {hw.load_1m:.2f}" if hw.load_1m is not None else None)
    c2.metric("RAM available", f"{hw.ram_available_gb:.1f} / {hw.ram_total_gb:.1f} GB" if hw.ram_total_gb else "?")
    c3.metric("Disk free", f"{hw.disk_free_gb:.0f} / {hw.disk_total_gb:.0f} GB", help=hw.disk_path)

    st.markdown("**Render on**: `local` (a process pool on this machine) or an existing Dask cluster, "
                "`dask://HOST:PORT`. A cluster's workers must see the inputs, the studio home and the outputs "
                "at the same paths (a shared path) and run this repository's version.")
    current = storage.load_settings()
    url = st.text_input("Render on", current.executor, key="set.executor", label_visibility="collapsed")
    t1, t2 = st.columns(2)
    if t1.button("Test connection", key="set.executor_test"):
        with ui.shown_errors():
            from core.render.executors import make_executor

            with make_executor(url.strip() or "local", timeout=5) as (_, n):
                st.success("local process pool" if n is None else f"connected: {n} worker threads")
    if t2.button("Save", key="set.executor_save"):
        with ui.shown_errors():
            storage.save_settings(dataclasses.replace(storage.load_settings(), executor=url.strip() or "local"))
            st.success("saved: the queue worker renders its next job there")

    st.markdown("**Decode on**: `cpu`, or `cuda`: NVDEC on an NVIDIA GPU, which frees the CPU's decode share for "
                "the other stages. Where it cannot open, the CPU decodes and the job's result says why; the "
                "frames, and so the outputs, are the same either way.")
    d1, d2 = st.columns([3, 1])
    decode = d1.radio("Decode on", DECODERS, index=DECODERS.index(current.decode), horizontal=True,
                      key="set.decode", label_visibility="collapsed")
    if decode == "cuda" and hw.nvdec is not None:  # the trial decode above: a GPU alone does not make NVDEC work
        d1.caption(f"NVDEC not usable ({hw.nvdec}): renders here would decode on the CPU.")
    if d2.button("Save", key="set.decode_save"):
        with ui.shown_errors():
            storage.save_settings(dataclasses.replace(storage.load_settings(), decode=decode))
            st.success(f"saved: the queue worker decodes its next job on {decode}")

with presets:
    names = list_presets()
    name = st.selectbox("Preset", names, index=names.index("balanced") if "balanced" in names else 0,
                        key="set.preset")
    with ui.shown_errors():
        preset = checked_preset(name)
        st.caption(preset.description)
        values = to_dict(preset)
        sets = ui.schema_form([f for f in schema(Preset) if f["name"] == "chunk_seconds"], values,
                              f"set.p.{name}")
        c1, c2 = st.columns(2)
        with c1:
            st.markdown("**Encoder**")
            sets |= ui.schema_form(schema(EncoderConfig), values["encoder"], f"set.e.{name}", "encoder.")
        with c2:
            st.markdown("**Temporal**")
            sets |= ui.schema_form(schema(TemporalConfig), values["temporal"], f"set.t.{name}", "temporal.")
        with st.expander("As YAML"):
            st.code(yaml.safe_dump(values, sort_keys=False), language="yaml")
        new_name = st.text_input("Save as (custom preset name)", value=f"{name}_custom", key="set.save_name")
        # saving over one of the user's own presets replaces it: asked first
        replace = not (user_dir() / f"{new_name}.yaml").is_file() or st.checkbox(
            f"Replace my custom preset {new_name!r}", key=f"set.save_replace.{new_name}")
        if st.button("Save preset", key="set.save", disabled=not replace):
            path = save_preset(apply_sets(preset, sets), new_name)
            st.success(f"saved {path}")

settings = storage.load_settings()
with folders:
    for field, label, what, key, button in (
            ("media_folders", "Media folders", "relative paths are under the studio home", "set.media",
             "set.save_folders"),
            ("output_folders", "Output folders", "where renders may be written, the first is the default; "
             "`renders` is always one", "set.outputs", "set.save_outputs")):
        st.markdown(f"**{label}** (one per line; {what})")
        text = st.text_area(label, "\n".join(getattr(settings, field)), key=key, label_visibility="collapsed")
        if st.button(f"Save {label.lower()}", key=button):
            with ui.shown_errors():
                lines = tuple(line.strip() for line in text.splitlines() if line.strip())
                storage.save_settings(dataclasses.replace(settings, **{field: lines}))
                st.success(f"saved {storage.settings_path()}")
    st.write({"studio home": str(studio_home()), "media": [str(p) for p in storage.media_folders(settings)],
              "outputs": [str(p) for p in storage.output_folders(settings)],
              "LUTs": [str(BUNDLED_DIR.parent / "luts"), str(studio_home() / "luts")],
              "models": [str(BUNDLED_DIR.parent / "models"), str(studio_home() / "models")],
              "custom presets": str(user_dir())})

with folders:
    st.markdown("**Watch folders**: a new clip dropped in a watched folder is queued once it stops growing, "
                "never twice (content hash). The studio starts the watchers when enabled (restart to apply).")
    with ui.shown_errors():
        watch_cfg = watch.load_watch_settings()
        rows = [{"folder": w.folder, "style": w.style, "preset": w.preset, "out": w.out, "sets": " ".join(w.sets),
                 "settle_s": w.settle_s} for w in watch_cfg.folders]
        edited = st.data_editor(rows or [{"folder": "", "style": "pencil", "preset": "balanced", "out": "renders",
                                          "sets": "", "settle_s": 5.0}],
                                num_rows="dynamic", key="set.watch_rows", width="stretch")
        enabled = st.toggle("Start the watchers with the studio", value=watch_cfg.enabled, key="set.watch_on")
        if st.button("Save watch folders", key="set.save_watch"):
            wanted = tuple(watch.WatchFolder(folder=str(r["folder"]).strip(), style=str(r["style"]).strip(),
                                             preset=str(r["preset"]).strip(), out=str(r["out"]).strip() or "renders",
                                             sets=tuple(str(r["sets"] or "").split()),
                                             settle_s=float(r["settle_s"] or 5.0))
                           for r in edited if str(r.get("folder") or "").strip())
            path = watch.save_watch_settings(watch.WatchSettings(enabled=enabled, folders=wanted))
            st.success(f"saved {path}")
        seen = watch.seen_files()
        if seen:
            st.caption("Files the watchers have handled")
            st.dataframe([{"path": f.path, "seen": f.seen, "job": f.job_id, "error": f.error} for f in seen[:200]],
                         hide_index=True, width="stretch")

with store:
    # one type per column (text here): a column of numbers and "forever" is no Arrow column
    st.dataframe([{"tier": u.tier, "files": u.files, "size (MB)": round(u.bytes / 2**20, 1),
                   "kept for": f"{u.retention_days:g} days" if u.retention_days else "forever",
                   "folder": str(u.folder)} for u in storage.usage(settings)], hide_index=True, width="stretch")
    st.caption(f"{disk.free_bytes() / 2**30:.1f} GB free; jobs are refused below {settings.min_free_gb:g} GB")
    with st.form("set.storage"):
        days = {t: st.number_input(f"Keep {t} (days, 0 = forever)", 0.0, 3650.0,
                                   float(getattr(settings.retention, t)), key=f"set.ret.{t}")
                for t in storage.TIERS}
        min_free = st.number_input("Minimum free disk (GB)", 0.0, 10_000.0, float(settings.min_free_gb),
                                   key="set.min_free")
        if st.form_submit_button("Save storage settings"):
            with ui.shown_errors():
                storage.save_settings(dataclasses.replace(settings, retention=storage.Retention(**days),
                                                          min_free_gb=min_free))
                st.success("saved")
    # two steps: the plan (what would go, counted and sized), then a confirmation that removes only that
    if st.button("Clean up now", key="set.cleanup"):
        queue = ui.job_queue()
        with ui.shown_errors():
            plan = storage.plan_cleanup(storage.load_settings(), keep=in_use_paths(queue) if queue else ())
            st.session_state["set.cleanup_plan"] = plan if plan.items else None
            if not plan.items:
                st.success(f"removed 0 items: nothing is older than its tier's retention; "
                           f"{plan.kept_in_use} kept for active jobs")
    plan = st.session_state.get("set.cleanup_plan")
    if plan is not None:
        asking = st.empty()  # emptied once answered, so a spent "Delete" button is never left on screen
        with asking.container():
            items = _count(len(plan.items), "item")
            st.warning(f"This deletes {items} ({plan.bytes / 2**20:.1f} MB) older than their tier's retention, "
                       f"for good; {plan.kept_in_use} kept for active jobs. Delete them?")
            st.dataframe([{"tier": tier, "items": n, "size (MB)": round(size / 2**20, 1)}
                          for tier, n, size in plan.tiers], hide_index=True)
            with st.expander("Items"):
                st.code("\n".join(str(p.relative_to(studio_home())) for p in plan.items), language=None)
            c1, c2 = st.columns(2)
            confirmed = c1.button(f"Delete {items}", type="primary", key="set.cleanup_confirm")
            cancelled = c2.button("Cancel", key="set.cleanup_cancel")
        if confirmed or cancelled:
            st.session_state["set.cleanup_plan"] = None
            asking.empty()
        if confirmed:
            queue = ui.job_queue()
            with ui.shown_errors():
                report = storage.cleanup(storage.load_settings(), keep=in_use_paths(queue) if queue else (),
                                         now=plan.now, only=plan.items)
                st.success(f"removed {_count(len(report.removed), 'item')} ({report.bytes / 2**20:.1f} MB); "
                           f"{report.kept_in_use} kept for active jobs")
