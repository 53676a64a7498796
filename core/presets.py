"""Render presets: encoder, chunking, temporal settings and per-style parameters, as frozen dataclasses.

Presets are YAML files loaded strictly (``yaml.safe_load`` -> :func:`core.config.from_mapping`): an
unknown key or a wrong type is an error naming the key and the file. Bundled presets live in
``presets/``; custom ones are saved to ``$VP_HOME/presets`` and found by name too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from . import atomic
from .config import from_mapping, replace_path, to_dict, validate
from .errors import ConfigError
from .paths import studio_home

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "presets"




@dataclass(frozen=True)
class EncoderConfig:
    """How chunks are encoded, and so what the output is. ``codec`` "auto" takes NVENC when it opens, else libx264.

    ``qp`` (when set) overrides ``crf`` for a constant-quantiser encode; ``qp: 0`` is lossless x264. ``crf``,
    ``preset`` and ``qp`` steer the H.264/H.265 encoders only: ProRes and DNxHR are fixed-quality intra codecs
    (their ``profile`` sets the rate), PNG and TIFF are lossless. ``pix_fmt`` and ``profile`` left empty take
    the codec's own (:data:`core.video.writer.CODECS`): yuv420p for H.264/H.265, ProRes 422 HQ in
    yuv422p10le, DNxHR HQ in yuv422p, rgb24 for PNG/TIFF, bgr0 (lossless RGB) for FFV1; H.265 is 10-bit
    (Main 10) with ``pix_fmt: yuv420p10le`` or ``profile: main10``. Which codec goes in which container is
    checked against the output path before a render starts.
    """

    codec: str = field(default="libx264", metadata={"help": (
        "libx264, libx265, h264_nvenc, hevc_nvenc, ffv1, prores_ks (.mov), dnxhd (.mxf or .mov), png or tiff "
        "(an image sequence in a folder) or auto")})
    crf: int = field(default=20, metadata={"min": 0, "max": 51})
    preset: str = field(default="veryfast", metadata={"help": "x264 speed preset (ultrafast .. veryslow)"})
    qp: int | None = field(default=None, metadata={"min": 0, "max": 51})
    pix_fmt: str = field(default="", metadata={"help": (
        "pixel format, e.g. yuv420p10le for 10-bit H.265; empty: the codec's own")})
    profile: str = field(default="", metadata={"help": (
        "ProRes: proxy, lt, standard, hq, 4444, 4444xq; DNxHR: dnxhr_lb, dnxhr_sq, dnxhr_hq, dnxhr_hqx, dnxhr_444; "
        "H.265: main, main10; empty: the codec's own (hq, dnxhr_hq, from pix_fmt)")})
    threads: int = field(default=1, metadata={"min": 1, "max": 64, "help": (
        "encoder threads per chunk; chunks run in parallel, and a fixed count keeps output bit-identical")})


@dataclass(frozen=True)
class TemporalConfig:
    """Temporal stabilisation. Strengths are the EMA weight of the past (0 = off, 0.9 = very smooth).

    ``mode``: ``flow`` warps the past along the input's optical flow before blending and gives it no
    weight where the flow is unreliable, so moving content does not ghost (measured: a quarter or less of
    the per-frame render's warping error, at SSIM >= 0.95 to it, for cartoon and pencil; ~10 ms a frame
    more at 720p); ``ema`` blends in place (cheap, ghosts on motion, so it must stay weak); ``off``;
    ``neural`` is the flow mode made for a network's output (whose texture flickers in colour more than in
    structure): the past weighs ``neural_luma`` in luma and ``neural_chroma`` in chroma. With
    ``neural_ssim`` > 0 the luma hold is chosen per frame: the strongest up to ``neural_luma`` that keeps the
    frame's SSIM to what the model drew at ``neural_ssim`` or more. One fixed hold was wrong for every clip:
    0.42 left slow footage at 0.37x of the per-frame flicker with SSIM to spare (0.985), while fast motion
    (cyclists) fell below SSIM 0.90 at 0.5, because warping the past costs detail in proportion to motion.
    A style can ask for a mode (:meth:`for_style`; the ``neural`` style asks for ``neural``).
    ``lines_strength`` applies to line work (edges, pencil strokes), which flickers most.
    ``cut_threshold`` is the Bhattacharyya histogram distance between consecutive input frames above
    which a scene cut is declared and the state resets.
    """

    mode: str = field(default="flow", metadata={"choices": ("off", "ema", "flow", "neural")})
    strength: float = field(default=0.4, metadata={"min": 0.0, "max": 0.95})
    lines_strength: float = field(default=0.83, metadata={"min": 0.0, "max": 0.95})
    cut_threshold: float = field(default=0.45, metadata={"min": 0.05, "max": 1.0})
    max_preroll: int = field(default=64, metadata={"min": 0, "max": 500})
    neural_luma: float = field(default=0.9, metadata={"min": 0.0, "max": 0.95})
    neural_chroma: float = field(default=0.9, metadata={"min": 0.0, "max": 0.95})
    neural_ssim: float = field(default=0.91, metadata={"min": 0.0, "max": 0.999})

    def for_style(self, mode: str) -> TemporalConfig:
        """This config with the temporal ``mode`` a style asks for (``""``: none) in place of the preset's
        ``ema`` or ``flow``; ``off`` stays off."""
        return self if not mode or self.mode == "off" else replace(self, mode=mode)

    def preroll_frames(self) -> int:
        """Frames a chunk decodes before its start so the EMA has forgotten its start-up state.

        The weight of a state ``n`` frames old is ``s**n`` (at most that in flow mode, where it is
        ``s`` per frame only where the flow is reliable); we want it below 0.1/255, a tenth of a code
        value, so chunked and single-pass renders agree to rounding.
        """
        if self.mode == "off":
            return 1  # one frame is still needed to see a cut on the chunk's first frame
        s = max(self.neural_luma, self.neural_chroma) if self.mode == "neural" else 0.0
        s = max(s, self.strength, self.lines_strength)
        if s <= 0:
            return 1
        return max(1, min(self.max_preroll, math.ceil(math.log(0.1 / 255) / math.log(s))))


@dataclass(frozen=True)
class Preset:
    """A whole render recipe. ``styles`` maps a style name to its parameter overrides."""

    name: str = "custom"
    description: str = ""
    chunk_seconds: float = field(default=10.0, metadata={"min": 0.5, "max": 3600.0})
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    styles: dict[str, dict[str, Any]] = field(default_factory=dict)


def user_dir() -> Path:
    return studio_home() / "presets"


def preset_file(name_or_path: str) -> Path:
    """The YAML file a preset name (custom first, then bundled) or path stands for; ConfigError if none."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: preset file not found")
        return p
    for folder in (user_dir(), BUNDLED_DIR):
        cand = folder / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    raise ConfigError(f"unknown preset {name_or_path!r} (choose from: {', '.join(list_presets())})")


def load_preset(name_or_path: str = "balanced") -> Preset:
    """A preset by name (custom first, then bundled) or by path to a YAML file.

    Its structure is checked here; its ``styles`` mappings are the style registry's to check
    (:func:`stylizers.checked_preset`): presets are data the styles read, and this module knows no style.
    """
    path = preset_file(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    data.setdefault("name", path.stem)
    preset = from_mapping(Preset, data, str(path))
    validate(preset, str(path))
    return preset


def list_presets() -> list[str]:
    names = {p.stem for p in BUNDLED_DIR.glob("*.yaml")}
    if user_dir().is_dir():
        names |= {p.stem for p in user_dir().glob("*.yaml")}
    return sorted(names)


def apply_sets(preset: Preset, sets: dict[str, str]) -> Preset:
    """Apply ``--set`` overrides addressed to the preset (``encoder.crf``, ``temporal.strength``...)."""
    for key, text in sets.items():
        preset = replace_path(preset, key, text, "--set")
    return preset


def save_preset(preset: Preset, name: str) -> Path:
    """Save a custom preset under ``$VP_HOME/presets/NAME.yaml`` (atomically) and return its path."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(f"preset name {name!r}: use letters, digits, '-' and '_' only")
    folder = user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    data = to_dict(replace(preset, name=name))
    atomic.write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())
    return path
