"""A model's input convention: channel order, value range, per-channel mean/std, minimum size.

Third-party fast-style models disagree on what a pixel is. Johnson's Lua models and their Windows ML exports
take **BGR** 0..255 (the graph subtracts the ImageNet mean in B, G, R order itself); PyTorch ports take RGB
0..255 or 0..1; some take -1..1, or ImageNet-normalised input. Feeding the wrong one renders with red and
blue swapped or washed out. A :class:`Convention` says which, and is resolved per field, highest first:

1. explicit settings (the ``neural`` style's ``channels`` / ``range`` params),
2. the registry entry's ``input`` (see :mod:`core.ml.registry`),
3. the sidecar ``<model>.json`` beside the model (:func:`read_sidecar`),
4. detection from the graph (:func:`detect`),
5. the default: RGB, 0..255, no mean/std.

The same convention is applied to the output (an image-to-image model answers in the convention it was
asked in). :meth:`Convention.fold` reduces range, mean and std to one per-channel ``gain`` and ``offset``
(``model = x01 * gain + offset``, with ``x01`` in [0, 1] in the model's channel order), so the per-frame
cost is one multiply-add; the channel flip is a view. The conversions themselves are in
:mod:`core.video.frames` (:func:`~core.video.frames.to_model`, :func:`~core.video.frames.from_model`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import BadModelError

#: value ranges by name: (lowest, span) of the model's pixel values. -1 means -1..1.
RANGES: dict[float, tuple[float, float]] = {1.0: (0.0, 1.0), 255.0: (0.0, 255.0), -1.0: (-1.0, 2.0)}
CHANNELS = ("RGB", "BGR")
#: The ImageNet mean in 0..255 units, R, G, B (the VGG/caffe preprocessing every Johnson model inherits).
IMAGENET_MEAN_255 = (123.68, 116.779, 103.939)
#: Sidecar keys and what each holds (the sidecar's whole vocabulary: anything else is refused).
SIDECAR_KEYS = ("range", "channels", "mean", "std", "min_size")


@dataclass(frozen=True)
class Convention:
    """What a model's input pixels are. Every field None means "not said here" (see :func:`merge`).

    ``channels`` "RGB" or "BGR"; ``range`` 1.0 (0..1), 255.0 (0..255) or -1.0 (-1..1); ``mean`` and ``std``
    three floats in **R, G, B order** and in the range's units, applied after scaling (``(v - mean) / std``);
    ``min_size`` the smallest tile side the model takes, px (a dynamic model's tiles are padded up to it).
    """

    channels: str | None = None
    range: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    min_size: int | None = None

    def fold(self) -> tuple[np.ndarray, np.ndarray]:
        """(gain, offset), each (3,) float32 in the **model's** channel order: ``model = x01 * gain + offset``.

        For RGB/BGR 0..1 or 0..255 without mean/std the offset is exactly 0 and the gain the range, so the
        arithmetic (and the bytes of a render) is what a plain ``x * range`` gives.
        """
        lo, span = RANGES[self.range if self.range is not None else 255.0]
        mean = np.asarray(self.mean if self.mean is not None else (0.0, 0.0, 0.0), np.float64)
        std = np.asarray(self.std if self.std is not None else (1.0, 1.0, 1.0), np.float64)
        gain, offset = span / std, (lo - mean) / std
        if self.channels == "BGR":
            gain, offset = gain[::-1], offset[::-1]
        return gain.astype(np.float32), offset.astype(np.float32)

    @property
    def bgr(self) -> bool:
        return self.channels == "BGR"

    def describe(self) -> str:
        """One line for people: ``BGR, 0..255, mean (123.7, 116.8, 103.9)``."""
        rng = {1.0: "0..1", 255.0: "0..255", -1.0: "-1..1"}.get(self.range if self.range is not None else 255.0)
        parts = [self.channels or "RGB", rng]
        if self.mean is not None:
            parts.append("mean (" + ", ".join(f"{v:g}" for v in self.mean) + ")")
        if self.std is not None:
            parts.append("std (" + ", ".join(f"{v:g}" for v in self.std) + ")")
        if self.min_size:
            parts.append(f"min {self.min_size} px")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The sidecar / manifest form: only the fields that are set; ranges as ints (1, 255, -1)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = int(v) if f.name == "range" else list(v) if isinstance(v, tuple) else v
        return out


DEFAULT = Convention(channels="RGB", range=255.0)


def merge(*layers: Convention | None) -> Convention:
    """Per field, the first layer that sets it (highest precedence first), then :data:`DEFAULT`."""
    out = {}
    for f in fields(Convention):
        out[f.name] = next((getattr(c, f.name) for c in layers if c is not None and getattr(c, f.name) is not None),
                           getattr(DEFAULT, f.name))
    return Convention(**out)


def from_dict(d: Any, where: str) -> Convention:
    """A convention from JSON-like ``d`` (a sidecar, a manifest's ``input``), checked strictly: a bad value
    raises BadModelError naming ``where``, the key, what was expected and what came. Unknown keys are the
    caller's business (a manifest's ``input`` holds layout and precision too)."""
    if not isinstance(d, dict):
        raise BadModelError(f"{where}: expected a JSON object like {{\"range\": 255, \"channels\": \"BGR\"}} "
                            f"(no \"range\" key: got {type(d).__name__})")
    kw: dict[str, Any] = {}
    if "range" in d:
        v = d["range"]
        if isinstance(v, bool) or not isinstance(v, int | float) or float(v) not in RANGES:
            raise BadModelError(f"{where}: range must be 1, 255 or -1 (-1..1), got {_show(v)}")
        kw["range"] = float(v)
    if "channels" in d:
        v = d["channels"]
        if not isinstance(v, str) or v.upper() not in CHANNELS:
            raise BadModelError(f"{where}: channels must be \"RGB\" or \"BGR\", got {_show(v)}")
        kw["channels"] = v.upper()
    for key in ("mean", "std"):
        if key in d and d[key] is not None:
            v = d[key]
            ok = isinstance(v, list | tuple) and len(v) == 3 and all(
                isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e) for e in v)
            if not ok or (key == "std" and min(v) <= 0):
                want = "three positive numbers" if key == "std" else "three numbers"
                raise BadModelError(f"{where}: {key} must be {want} in R, G, B order, got {_show(v)}")
            kw[key] = tuple(float(e) for e in v)
    if "min_size" in d and d["min_size"] is not None:
        v = d["min_size"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
            raise BadModelError(f"{where}: min_size must be a whole number of pixels in 1..4096, got {_show(v)}")
        kw["min_size"] = v
    return Convention(**kw)


def read_sidecar(path: Path) -> Convention | None:
    """The convention in ``<model>.json`` beside ``path``; None without one. Keys: :data:`SIDECAR_KEYS`
    (e.g. ``{"range": 255, "channels": "BGR"}``). Errors name the sidecar and the bad key or value, never
    quote its text (it may be a link to any file)."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_bytes())
    except OSError as exc:
        raise BadModelError(f"{side}: cannot read the model's sidecar ({exc.strerror or type(exc).__name__})") from None
    except ValueError:
        raise BadModelError(f"{side}: expected JSON like {{\"range\": 255}} (not valid JSON)") from None
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(SIDECAR_KEYS))
        if unknown:
            raise BadModelError(f"{side}: unknown key {unknown[0]!r} (known: {', '.join(SIDECAR_KEYS)})")
    return from_dict(data, str(side))


def _show(v: Any) -> str:
    """A bad value for an error message: numbers as they are, anything else (text too) by its type only."""
    if isinstance(v, int | float | bool):
        return repr(v)
    if isinstance(v, list | tuple) and len(v) <= 4 and all(isinstance(e, int | float) for e in v):
        return repr(list(v))
    return type(v).__name__


# ---- detection -----------------------------------------------------------------------------------

#: Windows ML's image metadata (``Image.BitmapPixelFormat``) names the channel order outright.
_WINML_FORMATS = {"Bgr8": "BGR", "Bgra8": "BGR", "Rgb8": "RGB", "Rgba8": "RGB"}
#: How far from the input a mean subtraction may sit (nodes along the first consumers: Cast, Identity, ...).
_NEAR = 3


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` read from a graph: the convention fields it could tell and why (for ``models info``)."""

    convention: Convention
    reason: str


def detect(path: Path) -> Detection | None:
    """The convention a graph shows, or None when it shows nothing. Reads only the graph, never runs it.

    Signs, strongest first:

    * Windows ML metadata ``Image.BitmapPixelFormat`` ``Bgr8`` / ``Rgb8``: the channel order.
    * within :data:`_NEAR` nodes of the input, an ``ImageScaler`` bias or an ``Add`` (``Sub``) of a 3-value
      constant (shape [1,3,1,1], [3,1,1] or [3]) equal to minus (plus) the ImageNet mean in 0..255: the graph
      does the caffe preprocessing itself, so it takes 0..255 pixels, and the constant's order tells the
      channels (B, G, R = 103.9, 116.8, 123.7 is BGR: Johnson's models and their Windows ML exports).
    """
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx raises DecodeError and friends; loading the session reports it properly
        return None
    meta = {p.key: p.value for p in proto.metadata_props}
    graph = proto.graph
    consts = {t.name: t for t in graph.initializer}
    consts.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
                   if a.name == "value"})
    inputs = [i.name for i in graph.input if i.name not in consts]
    found: Convention | None = None
    reason = ""
    frontier, seen = set(inputs[:1]), set()
    for _ in range(_NEAR):
        nxt = set()
        for node in graph.node:
            if not frontier.intersection(node.input) or id(node) in seen:
                continue
            seen.add(id(node))
            mean = _mean_of(node, consts, numpy_helper)
            if mean is not None:
                order = _mean_order(mean)
                if order is not None:
                    found = Convention(channels=order, range=255.0)
                    rgb_order = "B, G, R" if order == "BGR" else "R, G, B"
                    reason = f"{node.op_type} near the input adds the ImageNet mean in {rgb_order} order"
                    break
            nxt.update(node.output)
        if found is not None:
            break
        frontier = nxt
    pixel_format = _WINML_FORMATS.get(meta.get("Image.BitmapPixelFormat", ""))
    if pixel_format is not None:
        found = replace(found or Convention(), channels=pixel_format)
        reason = (reason + "; " if reason else "") + f"Windows ML metadata Image.BitmapPixelFormat says {pixel_format}"
    return Detection(found, reason) if found is not None else None


def _mean_of(node: Any, consts: dict[str, Any], numpy_helper: Any) -> np.ndarray | None:
    """The 3 values ``node`` adds to its input (an ImageScaler bias, an Add's constant, minus a Sub's), or None."""
    if node.op_type == "ImageScaler":
        bias = next((list(a.floats) for a in node.attribute if a.name == "bias"), [])
        scale = next((a.f for a in node.attribute if a.name == "scale"), 1.0)
        return np.asarray(bias, np.float64) if len(bias) == 3 and abs(scale - 1.0) < 1e-6 else None
    if node.op_type not in ("Add", "Sub") or len(node.input) != 2:
        return None
    names = [n for n in node.input if n in consts]
    if len(names) != 1:
        return None
    value = numpy_helper.to_array(consts[names[0]]).astype(np.float64)
    if value.size != 3 or value.shape not in ((1, 3, 1, 1), (3, 1, 1), (3,)):
        return None
    value = value.ravel()
    if node.op_type == "Sub":
        if node.input[1] != names[0]:  # const - x: not a mean subtraction
            return None
        value = -value
    return value


def _mean_order(added: np.ndarray) -> str | None:
    """"BGR" when ``added`` is minus the ImageNet mean in B, G, R order, "RGB" in R, G, B order, else None."""
    mean = -added
    rgb = np.asarray(IMAGENET_MEAN_255)
    if np.allclose(mean, rgb[::-1], atol=0.5):
        return "BGR"
    if np.allclose(mean, rgb, atol=0.5):
        return "RGB"
    return None


def resolve(path: Path, explicit: Convention | None = None,
            declared: Convention | None = None) -> tuple[Convention, dict[str, str]]:
    """The convention of the model at ``path`` and, per field, where it came from ("explicit", "registry",
    "sidecar", "detected: <why>", "default"). ``explicit``: the caller's settings; ``declared``: the registry
    entry's. Raises BadModelError for a bad sidecar (naming it)."""
    sidecar = read_sidecar(path)
    found = detect(path)
    layers = [("explicit", explicit), ("registry", declared), ("sidecar", sidecar),
              (f"detected: {found.reason}" if found else "detected", found.convention if found else None)]
    conv = merge(*(c for _, c in layers))
    origin = {}
    for f in fields(Convention):
        origin[f.name] = next((label for label, c in layers if c is not None and getattr(c, f.name) is not None),
                              "default")
    return conv, origin
