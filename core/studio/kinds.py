"""The kinds of job the queue holds (render, train, autotune) and what each one's spec must say.

A spec is checked when it is queued, as its command would check it (a render through ``build_job`` and
``check_paths``), so a bad job is refused with one line naming the setting, never claimed and failed later.
Paths become absolute: the worker that runs a job has another working folder than whoever queued it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError, MediaNotFoundError

KINDS = ("render", "train", "autotune")


def _unknown(kind: str, spec: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    extra = sorted(set(spec) - set(known))
    if extra:
        raise ConfigError(f"{kind} job: unknown setting {extra[0]!r} (known: {', '.join(known)})")
    missing = [k for k, v in known.items() if v is _REQUIRED and k not in spec]
    if missing:
        raise ConfigError(f"{kind} job: missing setting {missing[0]!r}")


_REQUIRED = object()


def _number(kind: str, key: str, value: Any, *, integer: bool = False, lo: float | None = None,
            hi: float | None = None, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(value):
        want = "an integer" if integer else "a number"
        raise ConfigError(f"{kind} job: {key} must be {want}{' or null' if optional else ''}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{kind} job: {key}={value!r} is out of range [{lo} .. {hi}]")
    return value


def _text(kind: str, key: str, value: Any, *, optional: bool = False, choices: Sequence[str] = ()) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{kind} job: {key} must be a non-empty string, got {value!r}")
    if choices and value not in choices:
        raise ConfigError(f"{kind} job: {key}={value!r} is not one of {', '.join(choices)}")
    return value


def _sets(kind: str, key: str, value: Any) -> dict[str, Any]:
    """``{key: value}`` overrides as typed (kept verbatim; :func:`sets_text` gives build_job's strings)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{kind} job: {key} must be a mapping of key -> value, got {value!r}")
    for k, v in value.items():
        if not isinstance(k, str) or not k.strip() or not isinstance(v, str | int | float | bool):
            raise ConfigError(f"{kind} job: {key} entry {k!r}={v!r}: expected a name and a string or number")
    return dict(value)


def sets_text(sets: Mapping[str, Any]) -> dict[str, str]:
    """A spec's ``sets`` as the ``--set`` strings :func:`core.render.spec.build_job` parses."""
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in sets.items()}


def _path(value: str) -> str:
    """Absolute, because the worker that runs the job has another working folder than whoever queued it."""
    return str(Path(value).expanduser().absolute())


_RENDER = {"input": _REQUIRED, "output": _REQUIRED, "style": "none", "preset": "balanced", "sets": None,
           "chunk_seconds": None, "workers": None, "audio": "all", "subtitles": "all"}


def _check_render(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Refused at queue time exactly as ``render`` would refuse it: through build_job and check_paths."""
    return render_spec(spec)[0]


def render_spec(spec: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The complete render spec and its job hash (which names its work folder)."""
    from core.render.pipeline import check_paths
    from core.render.spec import build_job
    from core.video.stitch import KEEP_CHOICES

    _unknown("render", spec, _RENDER)
    s = {**_RENDER, **spec}
    out = {"input": _path(_text("render", "input", s["input"])),
           "output": _path(_text("render", "output", s["output"])),
           "style": _text("render", "style", s["style"]), "preset": _text("render", "preset", s["preset"]),
           "sets": _sets("render", "sets", s["sets"]),
           "chunk_seconds": _number("render", "chunk_seconds", s["chunk_seconds"], lo=0.5, optional=True),
           "workers": _number("render", "workers", s["workers"], integer=True, lo=1, hi=256, optional=True),
           "audio": _text("render", "audio", s["audio"], choices=KEEP_CHOICES),
           "subtitles": _text("render", "subtitles", s["subtitles"], choices=KEEP_CHOICES)}
    job = build_job(out["input"], out["output"], out["style"], out["preset"], sets_text(out["sets"]),
                    out["chunk_seconds"], audio=out["audio"], subtitles=out["subtitles"])
    check_paths(job)
    return out, job.job_hash()


_TRAIN = {"pairs": _REQUIRED, "base": _REQUIRED, "name": None, "description": "", "epochs": 20, "lr": 1e-3,
          "batch": 8, "crop": 128, "patience": 4, "scale_min": 0.5, "int8": "no", "min_psnr": 32.0, "device": "auto"}


#: a model's look in the user's words: a line or a short paragraph on its card
MAX_DESCRIPTION = 2000


def _check_train(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Checked here without torch (core never imports it); the trainer re-checks when the job runs. ``name``:
    the registered model's (None: the trainer derives ``<base>-ft-<n>``); ``description``: its look."""
    from core.ml.registry import check_name

    _unknown("train", spec, _TRAIN)
    s = {**_TRAIN, **spec}
    if s["name"] is not None:
        check_name(s["name"], "train job: name")
    if not isinstance(s["description"], str) or len(s["description"]) > MAX_DESCRIPTION:
        raise ConfigError(f"train job: description must be a string of at most {MAX_DESCRIPTION} characters, "
                          f"got {str(s['description'])[:40]!r}{'...' if len(str(s['description'])) > 40 else ''}")
    out = {"pairs": _path(_text("train", "pairs", s["pairs"])), "base": _text("train", "base", s["base"]),
           "name": s["name"], "description": s["description"].strip(),
           "epochs": _number("train", "epochs", s["epochs"], integer=True, lo=1, hi=100_000),
           "lr": _number("train", "lr", s["lr"], lo=1e-9, hi=10.0),
           "batch": _number("train", "batch", s["batch"], integer=True, lo=1, hi=4096),
           "crop": _number("train", "crop", s["crop"], integer=True, lo=16, hi=4096),
           "patience": _number("train", "patience", s["patience"], integer=True, lo=1, hi=100_000),
           "scale_min": _number("train", "scale_min", s["scale_min"], lo=0.05, hi=1.0),
           "int8": _text("train", "int8", s["int8"], choices=("no", "try", "require")),
           "min_psnr": _number("train", "min_psnr", s["min_psnr"], lo=0.0, hi=200.0),
           "device": _text("train", "device", s["device"], choices=("auto", "cpu", "cuda"))}
    if not Path(out["pairs"]).is_dir():
        raise MediaNotFoundError(f"{out['pairs']}: pairs folder not found (it needs inputs/ and targets/)")
    return out


_AUTOTUNE = {"input": _REQUIRED, "style": _REQUIRED, "budget": 24, "preset": "balanced", "sets": None,
             "params": None, "frames": 8, "seed": 0, "pairs": 0, "objective": "auto", "edge_floor": None}


def _check_autotune(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Style, ``sets`` and ``params`` (``--param`` strings) are checked as :func:`core.learn.autotune.tune` will."""
    from core.learn.autotune import space_from_params
    from core.render.spec import build_job
    from core.video.probe import check_input_file
    from stylizers import get_style

    _unknown("autotune", spec, _AUTOTUNE)
    s = {**_AUTOTUNE, **spec}
    out = {"input": _path(_text("autotune", "input", s["input"])), "style": _text("autotune", "style", s["style"]),
           "budget": _number("autotune", "budget", s["budget"], integer=True, lo=1, hi=100_000),
           "preset": _text("autotune", "preset", s["preset"]), "sets": _sets("autotune", "sets", s["sets"]),
           "params": _sets("autotune", "params", s["params"]),
           "frames": _number("autotune", "frames", s["frames"], integer=True, lo=1, hi=64),
           "seed": _number("autotune", "seed", s["seed"], integer=True, lo=0),
           "pairs": _number("autotune", "pairs", s["pairs"], integer=True, lo=0, hi=1000),
           "objective": _text("autotune", "objective", s["objective"], choices=("auto", "metrics", "preference")),
           "edge_floor": _number("autotune", "edge_floor", s["edge_floor"], lo=-1.0, hi=1.0, optional=True)}
    check_input_file(Path(out["input"]))
    build_job(out["input"], Path(out["input"]).with_suffix(".autotune.mp4"), out["style"], out["preset"],
              sets_text(out["sets"]))
    space_from_params(get_style(out["style"]).Params, sets_text(out["params"]) or None)
    return out


#: kind -> its spec check: returns the complete spec (defaults filled in) or raises a StudioError
SPEC_CHECKS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "render": _check_render, "train": _check_train, "autotune": _check_autotune,
}


def check_spec(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` checked for ``kind`` and completed with defaults. Raises ConfigError naming the setting
    (unknown kind or key, wrong type, out of range, unknown style or parameter), MediaNotFoundError /
    OutputError for paths. Relative paths are made absolute (the worker runs in another folder)."""
    if kind not in SPEC_CHECKS:
        raise ConfigError(f"unknown job kind {kind!r} (known: {', '.join(KINDS)})")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{kind} job: the spec must be a mapping, got {type(spec).__name__}")
    return SPEC_CHECKS[kind](spec)
