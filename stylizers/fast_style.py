"""The neural style: a feed-forward (fast) style-transfer ONNX model, run in feathered tiles.

Any third-party fast-style model with one float32 (N, 3, H, W) input works, whether its spatial axes
are dynamic or fixed (e.g. 720x720 only), RGB or BGR, 0..255, 0..1 or -1..1, with or without a mean/std
(its :mod:`input convention <core.ml.convention>`: ``channels`` and ``range`` here beat the registry entry and
the sidecar ``<model>.json``, which beat what the graph shows, e.g. Johnson's BGR mean): :mod:`core.ml.session`
reads the graph, picks CPU or CUDA and tiles. The render engine stabilises it in the ``neural`` temporal mode
(:mod:`core.render.temporal`), whose weights fit a network's flicker, which is mostly colour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.assets import resolve_asset
from core.errors import ConfigError
from core.ml import session as ml_session
from core.ml.convention import Convention
from core.video.frames import to_float, to_uint8

from .base import Styled, Stylizer
from .signature import Floor, departure


def resolve_model(name: str) -> Path:
    """A model path from a registered ``name`` or ``name@version`` (checksum-verified, see
    :mod:`core.ml.registry`), else from a path or a file name in ``models/`` or ``$VP_HOME/models``."""
    if not name:
        raise ConfigError("neural: no model given (set model to a registered name such as sketch or teal, "
                          "a .onnx file, or a file name in the models folders)")
    from core.ml import registry

    if registry.is_registered(name):
        return registry.resolve(name)
    return resolve_asset(name, "models", ".onnx")


@dataclass(frozen=True)
class FastStyleParams:
    model: str = field(default="sketch", metadata={"help": "a registered model NAME[@VERSION] (bundled: sketch, teal, "
                                                            "oil; see `models list`), or a .onnx file"})
    range: int = field(default=0, metadata={"choices": (0, 1, 255, -1),
                                            "help": "pixel range the model takes: 255, 1, -1 (-1..1), or 0 = "
                                                    "from the registry, the sidecar <model>.json or the graph, "
                                                    "else 255"})
    channels: str = field(default="auto", metadata={"choices": ("auto", "rgb", "bgr"),
                                                    "help": "channel order the model takes: rgb, bgr, or auto = "
                                                            "from the registry, the sidecar or the graph "
                                                            "(an ImageNet mean in B, G, R order: bgr), else rgb"})
    mean: tuple[float, ...] = field(default=(), metadata={
        "help": "per-channel mean the model subtracts, R,G,B in the range's units (e.g. 123.68,116.78,103.94); "
                "empty = from the registry, the sidecar or the graph, else none"})
    std: tuple[float, ...] = field(default=(), metadata={
        "help": "per-channel std the model divides by, R,G,B in the range's units; empty = from the registry "
                "or the sidecar, else none"})
    min_size: int = field(default=0, metadata={"min": 0, "max": 4096,
                                               "help": "smallest tile side the model takes, px (tiles are padded "
                                                       "up to it); 0 = from the registry or the sidecar"})
    tile: int = field(default=0, metadata={"min": 0, "max": 4096,
                                           "help": "tile side in pixels for any-size models (at least 16); "
                                                   "0 = from free memory"})
    overlap: int = field(default=32, metadata={"min": 0, "max": 256, "help": "feathered overlap between tiles, px"})
    strength: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0, "help": "blend of the style over the input"})

    def __post_init__(self) -> None:
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) not in (0, 3):
                raise ConfigError(f"neural: {key} must be three numbers R,G,B (or empty for the model's own), got "
                                  f"{','.join(map(str, values))}")
        if any(v <= 0 for v in self.std):
            raise ConfigError(f"neural: std must be three positive numbers, got {','.join(map(str, self.std))}")
        # a tile of a few pixels runs the model once per few pixels: hours for one 720p clip
        if 0 < self.tile < ml_session.MIN_MODEL_SIDE:
            raise ConfigError(f"neural: tile {self.tile} is too small (0 = from free memory, else at least "
                              f"{ml_session.MIN_MODEL_SIDE} px)")


def explicit_convention(p: FastStyleParams) -> Convention:
    """The convention fields the params set (``range`` 0, ``channels`` auto, an empty ``mean`` or ``std`` and
    ``min_size`` 0 set nothing)."""
    return Convention(channels=None if p.channels == "auto" else p.channels.upper(),
                      range=float(p.range) if p.range else None, mean=tuple(p.mean) if p.mean else None,
                      std=tuple(p.std) if p.std else None, min_size=p.min_size or None)


def registered_convention(name: str) -> Convention | None:
    """The convention in a registered model's manifest ``input``; None for a plain file."""
    from core.ml import registry

    if not name or not registry.is_registered(name):
        return None
    return registry.entry(name).convention


class FastStyle(Stylizer):
    name = "neural"
    description = "Neural fast style transfer with an ONNX model (any size or fixed size), tiled without seams."
    Params = FastStyleParams
    temporal_mode = "neural"
    #: the model's look: blending back towards the input (``strength``) is the cheapest way to flicker less
    floors = (Floor("departure", 0.8, label="distance from the input"), Floor("sharpness", 0.8))

    @classmethod
    def measures(cls, source: np.ndarray, styled: Styled, out: np.ndarray) -> dict[str, float]:
        """``departure``: how far the output moved from the input (:func:`.signature.departure`)."""
        return {"departure": departure(source, out)}

    def __init__(self, params: FastStyleParams | None = None, shared: Mapping[str, Any] | None = None) -> None:
        super().__init__(params, shared)
        p = self.params
        self._session = ml_session.get_session(resolve_model(p.model), convention=explicit_convention(p),
                                               declared=registered_convention(p.model))

    @classmethod
    def chosen(cls, params: FastStyleParams) -> dict[str, str]:
        """The tile from free memory on the provider a render would use, and the input convention the model's
        registry entry, sidecar or graph gives (with where each came from); {} for a model that cannot be read."""
        from core.errors import StudioError
        from core.ml import convention

        out = {}
        if params.tile == 0:
            out["tile"] = f"{ml_session.auto_tile(ml_session.choose_provider())} px, from free memory"
        try:
            conv, origin = convention.resolve(resolve_model(params.model), explicit_convention(params),
                                              registered_convention(params.model))
        except (StudioError, OSError):
            return out
        auto = {"range": params.range == 0, "channels": params.channels == "auto", "mean": not params.mean,
                "std": not params.std, "min_size": params.min_size == 0}
        for name, is_auto in auto.items():
            value = getattr(conv, name)
            if is_auto and value is not None:
                shown = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else \
                    f"{value:g}" if isinstance(value, float) else str(value)
                where = origin[name]
                words = {"registry": "from the model's registry entry", "sidecar": "from the model's sidecar",
                         "default": "the default"}.get(where, where.replace("detected:", "detected from the graph:"))
                out[name] = f"{shown}, {words}"
        return out

    @classmethod
    def pin(cls, params: FastStyleParams) -> FastStyleParams:
        """A registered ``name`` becomes ``name@<active version>``: activating another version while a job
        runs (or before it resumes) cannot mix two models in one output. The version joins the job hash."""
        from core.ml import registry

        if params.model and "@" not in params.model and registry.is_registered(params.model):
            return replace(params, model=registry.entry(params.model).spec)
        return params

    @classmethod
    def temporal_sets(cls, params: FastStyleParams) -> dict[str, str]:
        """A registered model's declared stabiliser hold (its entry's ``temporal``; see core.ml.registry)."""
        from core.ml import registry

        if not params.model or not registry.is_registered(params.model):
            return {}
        return {f"temporal.{k}": repr(float(v)) for k, v in (registry.entry(params.model).temporal or {}).items()}

    @classmethod
    def files(cls, params: FastStyleParams) -> list[str]:
        """The model, and its sidecar when present: both change the pixels."""
        if not params.model:
            return []
        model = resolve_model(params.model)
        side = model.with_suffix(".json")
        return [str(model)] + ([str(side)] if side.is_file() else [])

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        return self.stylize_batch([rgb], [index])[0]

    def batch_size(self, height: int, width: int) -> int:
        """As many frames as :func:`core.ml.session.frames_per_run` fits in one run (1 on CPU)."""
        p = self.params
        return ml_session.frames_per_run(self._session, height, width, p.tile, p.overlap)

    def stylize_batch(self, frames: list[np.ndarray], indices: list[int]) -> list[Styled]:
        p = self.params
        xs = [to_float(rgb) for rgb in frames]
        ys = ml_session.run_tiled_batch(self._session, xs, p.tile, p.overlap)
        if p.strength < 1.0:
            ys = [x + np.float32(p.strength) * (y - x) for x, y in zip(xs, ys, strict=True)]
        return [Styled(base=to_uint8(y)) for y in ys]
