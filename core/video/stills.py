"""Still images in and out (previews, contact frames): PNG/JPEG via OpenCV, written atomically."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core import atomic
from core.errors import ConfigError, OutputError, UnsupportedVideoError

from .frames import bgr_to_rgb, check_rgb, rgb_to_bgr

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 RGB to a .png/.jpg file atomically."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTS:
        raise ConfigError(f"{path}: unsupported image type {path.suffix!r} (use {', '.join(IMAGE_EXTS)})")
    check_rgb(rgb, str(path))
    ok, buf = cv2.imencode(path.suffix.lower(), rgb_to_bgr(rgb))
    if not ok:
        raise OutputError(f"{path}: could not encode the image")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    path = Path(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnsupportedVideoError(f"{path}: not an image OpenCV can read")
    return bgr_to_rgb(bgr)
