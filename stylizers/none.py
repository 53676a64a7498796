"""The identity style: output pixels equal input pixels. Used for pixel-parity and codec tests."""

from __future__ import annotations

import numpy as np

from .base import Styled, Stylizer


class Identity(Stylizer):
    name = "none"
    description = "No style: the input frames unchanged (for parity checks and plain transcodes)."
    stabilise = False

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        return Styled(base=rgb)
