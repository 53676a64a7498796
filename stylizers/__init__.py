"""Style registry: a new style is one file in this package plus one line in ``STYLIZERS``."""

from __future__ import annotations

from typing import Any

from core.config import from_mapping, replace_path, validate
from core.errors import ConfigError
from core.presets import Preset, load_preset, preset_file

from .base import Styled, Stylizer, compose
from .cartoon import Cartoon
from .cinematic import Cinematic
from .comic import Comic
from .fast_style import FastStyle
from .none import Identity
from .pencil import Pencil

STYLIZERS: dict[str, type[Stylizer]] = {
    "none": Identity,
    "pencil": Pencil,
    "cartoon": Cartoon,
    "comic": Comic,
    "cinematic": Cinematic,
    "neural": FastStyle,
}

#: Styles that render with their default parameters (the rest name what they need in ``requires``).
READY_STYLES = [name for name, cls in STYLIZERS.items() if not cls.requires]

__all__ = ["READY_STYLES", "STYLIZERS", "Styled", "Stylizer", "build_params", "checked_preset", "compose", "get_style"]


def get_style(name: str) -> type[Stylizer]:
    """The stylizer class registered as ``name``; a ConfigError listing the choices otherwise."""
    try:
        return STYLIZERS[name]
    except KeyError:
        raise ConfigError(f"unknown style {name!r} (choose from: {', '.join(sorted(STYLIZERS))})") from None


def build_params(name: str, base: dict[str, Any] | None, sets: dict[str, str], source: str) -> Any:
    """A style's params: defaults, then ``base`` (a preset's mapping), then ``--set`` strings."""
    cls = get_style(name).Params
    params = from_mapping(cls, dict(base or {}), f"{source}: styles.{name}")
    validate(params, f"{source}: styles.{name}")
    for key, text in sets.items():
        params = replace_path(params, key, text, f"--set (style {name})")
    return params


def checked_preset(name_or_path: str) -> Preset:
    """:func:`core.presets.load_preset`, with every style it names known and its parameters valid.

    A ConfigError names the preset's file and the bad style or key, as for any other field of it.
    """
    preset = load_preset(name_or_path)
    source = str(preset_file(name_or_path))
    for style, params in preset.styles.items():
        if style not in STYLIZERS:
            raise ConfigError(f"{source}: styles: unknown style {style!r}")
        build_params(style, params, {}, source)
    return preset
