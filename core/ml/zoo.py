"""The catalogue of known third-party models, so ``download-model NAME`` needs no URL and no checksum.

Data, not code paths: one frozen :class:`ZooModel` per model says where it is published, its SHA-256 when a
source pins it (else ``None``: :mod:`core.ml.fetch` records the hash at the first download and holds later
ones to it), its size, its input convention (channel order, value range, size as plain fields), its licence
and where those facts come from.

The ONNX model zoo's fast neural style set (onnx/models, ``validated/vision/style_transfer/fast_neural_style``,
licence BSD-3-Clause per its README): Johnson et al.'s transformer net trained with pytorch/examples on COCO
2014, exported at opset 9 (``mosaic``) and opset 8 (``mosaic-8``). Its README: input RGB, float32 NCHW, values
in [0, 255]; output the same shape, clipped to [0, 255]. The graphs fix the input at 1x3x224x224 (the session
reads that from the graph and tiles). Pinned hashes are the ``oid sha256:`` of the repository's git-LFS pointer
files, which is the SHA-256 of the file itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError

ZOO_REPO = "https://github.com/onnx/models"
_STYLE_DIR = "validated/vision/style_transfer/fast_neural_style/model"


@dataclass(frozen=True)
class ZooModel:
    """One known model. ``channels`` "rgb" or "bgr"; ``value_range`` 255 (pixels 0..255) or 1 (0..1);
    ``input_size`` (H, W) when the graph fixes it; ``sha256`` 64 lowercase hex digits or None (not published:
    recorded at the first download); ``size`` in bytes when known; ``sha256_source`` says where the pin is from.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    channels: str
    value_range: int
    input_size: tuple[int, int] | None
    licence: str
    source: str
    description: str
    sha256_source: str = ""

    @property
    def style(self) -> str:
        """The registry entry's ``style``: marks a version as fetched from this catalogue entry."""
        return f"zoo:{self.name}"

    def sidecar(self) -> dict[str, Any]:
        """The ``<model>.json`` written beside the file (``range`` is what core.ml.session reads)."""
        return {"range": self.value_range, "channels": self.channels}

    def input_meta(self) -> dict[str, Any]:
        """The registry entry's ``input``: the convention as plain fields."""
        meta: dict[str, Any] = {"layout": "NCHW", "channels": self.channels, "range": self.value_range}
        if self.input_size is not None:
            meta["size"] = list(self.input_size)
        return meta


#: The LFS pointers read (oid and size), by file: onnx/models at the commits named in ``sha256_source``.
_PINS: dict[str, tuple[str, int, str]] = {
    "udnie-9": ("8656b6ce7dec8f22ee13c2d557d6b67bd6f550dde88d0f2e7c9972aeb765cc0d", 6728029,
                "onnx/models LFS pointer validated/.../udnie-9.onnx @2a67a85e"),
    "pointilism-9": ("5ee2b8d4d6bc60a777f54e0fe96a1b717360a004b79d56c67390d4a975b14d98", 6728029,
                     "onnx/models LFS pointer vision/.../pointilism-9.onnx @13fcb614"),
    "rain-princess-9": ("4162912e6f75fedef6f810ae989b9e10d3d5d43308dab34b027c850cf255e152", 6728029,
                        "onnx/models LFS pointer vision/.../rain-princess-9.onnx @13fcb614"),
    "pointilism-8": ("09fb31931c1826daf42552e451a908d068486a3ca946324a3ece758d51f46cad", 6726529,
                     "onnx/models LFS pointer validated/.../pointilism-8.onnx @4c46cd00"),
    "rain-princess-8": ("bf13b623576021a77dab6aa54c366d0900e8f55909be27cf4a40248d6ff6e097", 6726529,
                        "onnx/models LFS pointer vision/.../rain-princess-8.onnx @13fcb614"),
}

_LOOKS = {"mosaic": "a mosaic of bright tiles", "candy": "bright candy colours, flat swirls",
          "rain-princess": "Afremov's Rain Princess: warm palette-knife strokes",
          "udnie": "Picabia's Udnie: muted cubist planes", "pointilism": "pointillist dots"}


def _fast_style(look: str, opset: int) -> ZooModel:
    file = f"{look}-{opset}"
    sha, size, where = _PINS.get(file, (None, None, ""))
    return ZooModel(
        name=look if opset == 9 else file, urls=(f"{ZOO_REPO}/raw/main/{_STYLE_DIR}/{file}.onnx",), sha256=sha,
        size=size, channels="rgb", value_range=255, input_size=(224, 224), licence="BSD-3-Clause",
        source=f"ONNX model zoo, fast neural style ({file}.onnx, opset {opset})",
        description=f"fast neural style: {_LOOKS[look]}", sha256_source=where)


#: Every known model by name: ``mosaic`` is the opset-9 file, ``mosaic-8`` the opset-8 one.
CATALOGUE: dict[str, ZooModel] = {m.name: m for m in (_fast_style(look, opset) for opset in (9, 8) for look in _LOOKS)}


def known(name: str) -> bool:
    return name in CATALOGUE


def get(name: str) -> ZooModel:
    """The catalogue entry ``name``; ConfigError naming the known ones otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ConfigError(f"no known model {name!r} (known: {', '.join(sorted(CATALOGUE))})") from None


__all__ = ["CATALOGUE", "ZooModel", "get", "known"]
