"""A render job as a value: input, output, style, resolved parameters and preset.

Its hash (over everything that changes pixels, not the output path or worker count) names the work
folder, so a changed parameter, input or model file starts fresh while a re-run resumes. Which audio and
subtitle tracks the output keeps is in the job but not in its hash: only the stitch reads it, so the same
chunks serve a render with and without them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.config import replace_path, to_dict
from core.errors import ConfigError, OutputError
from core.fingerprint import file_sha256
from core.presets import EncoderConfig, Preset, apply_sets
from core.video.probe import OUTPUT_FORMATS
from core.video.stitch import check_keep, container_holds, foreign_files
from core.video.writer import CONTAINERS, SEQUENCES, codec_rule, pixel_format, resolve_codec
from stylizers import build_params, checked_preset, get_style

#: Bumped whenever a change alters rendered pixels, so old checkpoints are not reused.
#: 2: the chunk plan no longer depends on the worker count (lanes per 90 s of video); 3: the job-wide analysis
#: samples frames near keyframes on clips with few of them (core.render.plan.sample_indices: cartoon palettes);
#: 4: stabilised frames round to uint8 in one OpenCV pass (ties to even; stylizers.base.compose) and the cut
#: signature's thumbnail comes from the flow's 320 px copy (core.video.cuts.reduced); 5: the pencil's wide blur
#: runs at half size (stylizers.pencil.wide_blur); 6: the comic's halftone in integer arithmetic on a coverage
#: reduced by a whole factor (stylizers.comic), the cinematic vignette's gain in 255ths
ENGINE_VERSION = 6


@dataclass(frozen=True)
class JobSpec:
    """Everything a render (or any one of its chunks, anywhere) needs. Its hash names the work folder.

    ``audio`` and ``subtitles``: "all" keeps every such track of the input, "none" leaves them out.
    """

    input: str
    output: str
    style: str = "none"
    params: Any = None
    preset: Preset = field(default_factory=Preset)
    audio: str = "all"
    subtitles: str = "all"

    def fingerprint(self) -> dict[str, Any]:
        """What determines the rendered pixels: not the output path, the worker count or the kept tracks."""
        st = os.stat(self.input)
        preset = to_dict(self.preset)
        for k in ("name", "description", "styles"):
            preset.pop(k)
        files = {str(p): file_sha256(p) for p in get_style(self.style).files(self.params)}
        return {"engine": ENGINE_VERSION, "input": str(Path(self.input).resolve()), "size": st.st_size,
                "mtime_ns": st.st_mtime_ns, "style": self.style, "params": to_dict(self.params),
                "preset": preset, "files": files}

    def job_hash(self) -> str:
        blob = json.dumps(self.fingerprint(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:20]


def check_output(out: Path, encoder: EncoderConfig) -> None:
    """That ``out`` can take what ``encoder`` makes, checked before anything decodes: a file of a container that
    holds the codec (:data:`core.video.writer.CODECS`), or for PNG and TIFF a folder (new, empty, or an earlier
    sequence, which is replaced). One line naming the file and the fix: ConfigError for the codec, its pixel
    format or profile and a container that cannot hold it, OutputError for a path that cannot be written."""
    codec = resolve_codec(encoder)
    rule = codec_rule(codec)
    pixel_format(codec, encoder)
    suffix = out.suffix.lower()
    if codec in SEQUENCES:
        if suffix in CONTAINERS:
            raise ConfigError(f"{out}: {codec} makes an image sequence, written into a folder, not a {suffix} file; "
                              f"give a folder such as {out.with_suffix('')}_frames/ (or another encoder.codec)")
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out}: is a file; an image sequence is written into a folder: give a new folder name")
        foreign = foreign_files(out)
        if foreign:
            raise OutputError(f"{out}: holds files an image sequence does not ({foreign[0]}, ...); choose a new or "
                              "empty folder")
        return
    fmt = CONTAINERS.get(suffix)
    if fmt is None:
        raise OutputError(f"{out}: unsupported output container {suffix or '(none)'!r} (use {', '.join(CONTAINERS)}; "
                          "or a folder with --set encoder.codec=png or tiff)")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory; give a file name like {out / 'render.mp4'}")
    fits = list(rule.containers or (s for s, f in OUTPUT_FORMATS.items() if container_holds(f, codec)))
    if suffix not in fits:
        what = codec if rule.name == codec else f"{codec} ({rule.name})"
        use = f"use {' or '.join(fits)}, e.g. {out.with_suffix(fits[0]).name}" if fits else "no container we write does"
        raise ConfigError(f"{out}: a {suffix} file cannot hold {what} video; {use}")


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "encoder.crf=18"]`` -> ``{"a": "1", "encoder.crf": "18"}``; a ConfigError on bad items."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def style_params(style: str, base: dict[str, Any] | None, sets: dict[str, str], source: str) -> Any:
    """A style's params from its defaults, ``base`` (a preset's mapping) and ``--set`` strings, the sets taken
    as a whole: their order on the command line does not matter.

    Each ``--set`` replaces one field and the params check themselves after every replacement, so a set that
    is valid as a whole can be refused one key at a time (cartoon ``edge_low=306 edge_high=400`` from the
    default ``edge_high`` 130: ``edge_low`` first fails). A key refused now is retried after the others; the
    set is refused only when no key can go in, with the first refused key's own ConfigError. For the styles'
    checks (one field against another, ``edge_low <= edge_high``) that accepts exactly the sets whose end
    state is valid.
    """
    params = build_params(style, base, {}, source)
    pending = dict(sets)
    while pending:
        before = len(pending)
        refused: ConfigError | None = None
        for key, text in list(pending.items()):
            try:
                params = replace_path(params, key, text, f"--set (style {style})")
            except ConfigError as exc:
                refused = refused or exc
            else:
                del pending[key]
        if refused is not None and len(pending) == before:  # nothing went in this pass: nothing will
            raise refused
    return params


_PRESET_KEYS = {f.name for f in fields(Preset)} - {"name", "description", "styles"}


def build_job(input: str | Path, output: str | Path, style: str = "none", preset: str | Preset = "balanced",
              sets: dict[str, str] | None = None, chunk_seconds: float | None = None, *, audio: str = "all",
              subtitles: str = "all") -> JobSpec:
    """Resolve a job from what a user typed: style and preset names plus ``--set`` overrides.

    Keys naming preset fields (``chunk_seconds``, ``encoder.*``, ``temporal.*``) change the preset; the
    rest are the style's parameters. ``audio`` / ``subtitles``: "all" or "none". Raises ConfigError naming
    the bad key or value.
    """
    get_style(style)
    check_keep("audio", audio)
    check_keep("subtitles", subtitles)
    base = preset if isinstance(preset, Preset) else checked_preset(preset)
    sets = dict(sets or {})
    preset_sets = {k: v for k, v in sets.items() if k.split(".")[0] in _PRESET_KEYS}
    style_sets = {k: v for k, v in sets.items() if k not in preset_sets}
    resolved = apply_sets(base, preset_sets)
    if chunk_seconds is not None:
        resolved = apply_sets(resolved, {"chunk_seconds": str(chunk_seconds)})
    resolved = replace(resolved, temporal=resolved.temporal.for_style(get_style(style).temporal_mode))
    params = get_style(style).pin(style_params(style, resolved.styles.get(style), style_sets, f"preset {base.name}"))
    declared = {k: v for k, v in get_style(style).temporal_sets(params).items() if k not in preset_sets}
    if declared and resolved.temporal.mode != "off":
        resolved = apply_sets(resolved, declared)
    return JobSpec(input=str(Path(input)), output=str(Path(output)), style=style, params=params, preset=resolved,
                   audio=audio, subtitles=subtitles)
