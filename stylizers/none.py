"""The identity style: output pixels equal input pixels. Used for pixel-parity and codec tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Styled, Stylizer


@dataclass(frozen=True)
class IdentityParams:
    passthrough: bool = field(default=True, metadata={
        "help": "hand decoded frames straight to the encoder when nothing would change them (no RGB round "
                "trip: faster and lossless); false forces decode -> RGB -> encode"})


class Identity(Stylizer):
    name = "none"
    description = "No style: the input frames unchanged (for parity checks and plain transcodes)."
    Params = IdentityParams
    stabilise = False
    floors = ()  # no look of its own to keep: its output is its input

    @classmethod
    def check_size(cls, path: str, width: int, height: int) -> None:
        """Only :attr:`min_size`: frames copied as decoded are never measured, so a thin clip (8192x64)
        renders. Known gap: a clip that cannot be copied (another pixel format, ``passthrough`` off) goes
        through the per-frame metrics, whose SSIM needs what :func:`.base.thin_min_side` says."""
        cls.check_min_size(path, width, height)

    @property
    def passthrough(self) -> bool:
        """True when the pipeline may skip the RGB frame contract for this style altogether."""
        return bool(self.params.passthrough)

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        return Styled(base=rgb)
