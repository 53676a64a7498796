"""Streamlit pieces the pages share: cached reads, the style-parameter form, the media picker, error display.

Caching: pure reads of a file are ``st.cache_data`` keyed by the path and its modification time (a changed
file is re-read); the preference model is ``st.cache_resource`` (one object, never mutated). The job queue
is opened per run (a SQLite handle belongs to the thread that made it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from core.errors import StudioError


@contextlib.contextmanager
def shown_errors() -> Iterator[None]:
    """Show a studio error (a bad value, a missing file, a full disk) as one line instead of a traceback."""
    try:
        yield
    except StudioError as exc:
        st.error(str(exc))


def failure(job: Any, advice: dict[str, Any] | None) -> None:
    """A failed (or failed-and-requeued) job as a supervisor needs it: what went wrong in words naming their
    file, what to do, how often it was tried, and the technical line folded below (core.studio.advice)."""
    if advice is None:  # failed before advice was recorded
        st.error(job.error)
        return
    tried = f"tried {job.attempts} time{'s' if job.attempts != 1 else ''}"
    why = "not retried: the same input fails the same way" if advice.get("final") else \
        f"attempt {job.attempts} of {job.max_attempts}"
    st.error(advice["summary"])
    if advice.get("action"):
        st.info(f"**What to do:** {advice['action']}")
    st.caption(f"{tried} ({why})" if job.state == "failed" else why)
    with st.expander("Technical detail"):
        st.code(advice.get("technical") or job.error, language=None, wrap_lines=True)


def output_folder_picker(key: str) -> Path:
    """Where the render goes: one of the studio's output folders (Settings > Folders), never a typed path."""
    from core.paths import studio_home
    from core.studio import storage

    folders = storage.output_folders()
    home = studio_home()

    def shown(p: Path) -> str:
        return f"{p.relative_to(home)} (in the studio home)" if home in p.parents else str(p)

    return st.selectbox("Output folder", folders, key=f"{key}.folder", format_func=shown,
                        help="add folders in Settings > Folders; the file is named <clip>_<style>, never over "
                             "an earlier render")


def job_queue() -> Any:
    """The studio's job queue (core.studio.queue.JobQueue), or None with an error shown when it is unavailable."""
    try:
        from core.studio.queue import JobQueue
    except ImportError:
        st.error("the job queue (core/studio/queue.py) is not installed in this checkout")
        return None
    return JobQueue()


def mtime(path: str | Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def probe_info(path: str, stamp: float) -> Any:
    from core.video.probe import probe

    return probe(path)


@st.cache_data(show_spinner=False, max_entries=32)
def source_frame(path: str, stamp: float, seconds: float) -> np.ndarray:
    from app.actions import source_frame as read

    return read(path, seconds)


@st.cache_data(show_spinner="Rendering a preview frame...", max_entries=32)
def preview(path: str, stamp: float, style: str, preset: str, sets: tuple[tuple[str, str], ...],
            seconds: float) -> np.ndarray:
    from core.render.preview import preview_frame
    from core.render.spec import build_job

    return preview_frame(build_job(path, Path(path).with_suffix(".preview.mp4"), style, preset, dict(sets)), seconds)


@st.cache_data(show_spinner="Analysing the clip...", max_entries=16)
def worst_frames(path: str, stamp: float, k: int) -> list[Any]:
    from core.learn.sampling import worst_frames as pick

    return pick(path, k)


@st.cache_data(show_spinner="Analysing shots...", max_entries=16)
def shot_analysis(path: str, stamp: float) -> dict[str, Any]:
    from core.quality.shots import analyze

    return analyze(path).to_json()


@st.cache_resource(show_spinner=False, max_entries=4)
def preference_model(path: str, stamp: float) -> Any:
    from core.learn.preference import PreferenceModel

    return PreferenceModel.load(path)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return "" if value is None else str(value)


def field_widget(f: dict[str, Any], value: Any, key: str, chosen: str | None = None) -> Any:
    """One input widget for a schema field (core.config.schema): checkbox, selectbox, slider, number or text.
    ``chosen``: what the field's automatic value resolves to (Stylizer.chosen), shown as "auto (chosen: ...)"
    on the automatic choice, or in the label while the value is the automatic one."""
    label, help_ = f["name"], f.get("help")
    tp = f["type"]
    auto = _text(f["default"])
    if chosen and "choices" not in f and _text(value) == auto:
        label = f"{label}: {auto or 'empty'} = auto (chosen: {chosen})"
    if tp == "bool":
        return st.checkbox(label, value=bool(value), key=key, help=help_)
    if "choices" in f:
        choices = list(f["choices"])

        def shown(v: Any) -> str:
            return f"auto (chosen: {chosen})" if chosen and _text(v) == auto else str(v)

        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0, key=key,
                            help=help_, format_func=shown)
    lo, hi = f.get("min"), f.get("max")
    if tp == "int" and isinstance(value, int):
        if lo is not None and hi is not None and hi - lo <= 1000:
            return st.slider(label, int(lo), int(hi), int(value), key=key, help=help_)
        return st.number_input(label, min_value=lo, max_value=hi, value=int(value), step=1, key=key, help=help_)
    if tp == "float" and isinstance(value, (int, float)):
        if lo is not None and hi is not None:
            step = float(f"{(hi - lo) / 200:.1g}") or 0.01
            return st.slider(label, float(lo), float(hi), float(value), step=step, key=key, help=help_)
        return st.number_input(label, value=float(value), key=key, help=help_)
    return st.text_input(label, value=_text(value), key=key, help=help_ or f"type: {tp}")


#: a model given by file instead of by name, in the model picker
OTHER_MODEL = "a .onnx file..."


def model_choices() -> list[str]:
    """What the model picker offers: each registered name (its active version), then every ``name@version``."""
    from core.ml import registry

    names = sorted({e.name for e in registry.list_models()})
    infos = [registry.info(n) for n in names]
    # released versions only: a candidate renders by name@version once someone chose to, not from a picker
    return names + [f"{i.name}@{e.version}" for i in infos for e in i.versions if getattr(e, "state", None) is None]


def _model_label(choice: str) -> str:
    from core.ml import registry

    if choice == OTHER_MODEL:
        return choice
    e = registry.entry(choice)
    if "@" in choice:
        tag = f"v{e.version}" + (", active" if e.version == registry.info(e.name).active else "")
    else:
        tag = f"active: v{e.version}"
    return f"{choice}  ({tag}): {e.style or 'no description'}"


def model_picker(label: str, value: str, key: str, help_: str | None = None) -> str:
    """The neural style's ``model``: a registered model (name: its active version; name@version: pinned), each
    with its version, active marker and look, and its card below; or a file path typed in."""
    from core.ml import registry

    options = [*model_choices(), OTHER_MODEL]
    index = options.index(value) if value in options else len(options) - 1
    choice = st.selectbox(label, options, index=index, format_func=_model_label, key=key, help=help_)
    if choice == OTHER_MODEL:
        return st.text_input("Model file (.onnx)", value="" if value in options else value, key=f"{key}.file")
    card = registry.entry(choice).path.with_suffix(".md")
    if card.is_file():
        with st.expander(f"{choice}: model card"):
            st.markdown(card.read_text(encoding="utf-8"))
    return choice


#: a LUT given by file instead of by name, uploaded, and no LUT at all, in the LUT picker
OTHER_LUT, UPLOAD_LUT, NO_LUT = "a .cube file...", "upload a .cube...", "none"


def lut_picker(label: str, value: str, key: str, help_: str | None = None) -> str:
    """A LUT by name from the LUT folders (the bundled ``luts/`` and ``$VP_HOME/luts``), none, a file path, or
    an upload (checked, then stored in ``$VP_HOME/luts`` and picked by its name from then on)."""
    from core.assets import asset_names

    options = [NO_LUT, *asset_names("luts", ".cube"), UPLOAD_LUT, OTHER_LUT]
    current = value or NO_LUT
    index = options.index(current) if current in options else len(options) - 1
    choice = st.selectbox(label, options, index=index, key=key, help=help_)
    if choice == UPLOAD_LUT:
        up = st.file_uploader("LUT (.cube)", type=["cube"], key=f"{key}.upload")
        if up is None:
            return value
        from core.studio.storage import store_lut

        with shown_errors():
            name = store_lut(up.getvalue(), up.name)
            st.caption(f"stored as LUT {name!r} (in the LUT folder: pick it by name from now on)")
            return name
        return value
    if choice == OTHER_LUT:
        return st.text_input("LUT file (.cube)", value="" if current in options else value, key=f"{key}.file")
    return "" if choice == NO_LUT else choice


def schema_form(schema: list[dict[str, Any]], values: dict[str, Any], key: str, prefix: str = "",
                chosen: Callable[[dict[str, str]], dict[str, str]] | None = None) -> dict[str, str]:
    """Widgets for every field of ``schema`` starting at ``values``; returns ``--set`` strings
    (``prefix + name -> text``) for the fields the user changed. A field named ``model`` gets the model picker,
    one named ``lut`` the LUT picker. ``chosen(sets so far)``: what the automatic values resolve to (asked
    after the fields above, so a model picked above is the one whose convention is shown)."""
    sets: dict[str, str] = {}
    for f in schema:
        if isinstance(values.get(f["name"]), dict):
            continue  # nested dataclasses (a preset's encoder, temporal) are edited by their own form
        current = values.get(f["name"], f["default"])
        if f["name"] == "model" and f["type"] == "str":
            got = model_picker(f["name"], _text(current), f"{key}.{f['name']}", f.get("help"))
        elif f["name"] == "lut" and f["type"] == "str":
            got = lut_picker(f["name"], _text(current), f"{key}.{f['name']}", f.get("help"))
        else:
            hint = chosen(sets).get(f["name"]) if chosen is not None else None
            got = field_widget(f, current, f"{key}.{f['name']}", hint)
        if _text(got) != _text(current):
            sets[prefix + f["name"]] = _text(got)
    return sets


def shown_value(value: Any) -> str:
    """A parameter value for a table cell ("" when absent)."""
    return "" if value is None else _text(value)


def proposal_widgets(style: str, preset: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The Style Lab's widget values that set variants A and B to an auto-tuner proposal: their style and
    preset, and each proposed parameter in the type its widget holds (:func:`style_params_form`'s keys)."""
    from core.config import schema
    from stylizers import get_style

    fields = {f["name"]: f for f in schema(get_style(style).Params)}
    out: dict[str, Any] = {}
    for side, point in (("A", a), ("B", b)):
        out[f"lab.{side}.style"], out[f"lab.{side}.preset"] = style, preset
        for name, value in point.items():
            f = fields.get(name)
            if f is None:
                continue
            key = f"lab.{side}.params.{style}.{preset}.{name}"
            if f["type"] == "bool":
                out[key] = bool(value)
            elif "choices" in f:
                out[key] = value
            elif f["type"] == "int" and isinstance(value, int | float):
                out[key] = int(value)
            elif f["type"] == "float" and isinstance(value, int | float):
                out[key] = float(value)
            else:
                out[key] = _text(value)
    return out


def style_params_form(style: str, preset: str, key: str) -> dict[str, str]:
    """The style's parameter widgets, starting at the preset's values; returns the changed ones as ``--set``s."""
    from core.config import schema, to_dict
    from core.presets import load_preset
    from stylizers import build_params, get_style

    styles = load_preset(preset).styles.get(style)
    base = to_dict(build_params(style, styles, {}, f"preset {preset}"))
    cls = get_style(style)

    def chosen(sets: dict[str, str]) -> dict[str, str]:
        try:
            return cls.chosen(build_params(style, styles, sets, f"preset {preset}"))
        except StudioError:
            return {}  # a value still being typed; the form shows its own error when queued

    return schema_form(schema(cls.Params), base, f"{key}.{style}.{preset}", chosen=chosen)


def media_picker(key: str, label: str = "Input clip") -> Path | None:
    """Choose a video from the media folders and uploads, or upload one (it keeps its own name)."""
    from core.studio import storage

    files = storage.list_media()
    how = st.radio(label, ["From media folders", "Upload"], horizontal=True, key=f"{key}.how")
    if how == "Upload":
        up = st.file_uploader("Video file", type=[e.lstrip(".") for e in storage.VIDEO_EXTS], key=f"{key}.upload")
        if up is None:
            return None
        with shown_errors():
            return storage.store_upload(up.getvalue(), up.name)
        return None
    if not files:
        st.info("No videos in the media folders yet: upload one, or add a folder in Settings.")
        return None
    uploads = storage.tier_folder("uploads").resolve()

    def where(p: Path) -> str:
        return "uploaded" if uploads in p.parents else str(p.parent)

    chosen = st.selectbox("Clip", files, format_func=lambda p: f"{p.name}  ({where(p)})", key=f"{key}.file")
    return Path(chosen) if chosen is not None else None


@st.cache_data(show_spinner=False, ttl=5)
def hardware() -> Any:
    """The hardware summary (app.hardware), re-read at most every 5 s."""
    from app.hardware import summary

    return summary()
