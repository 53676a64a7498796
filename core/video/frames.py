"""Every frame conversion of the studio lives here, and nowhere else.

The frame contract between stages: a C-contiguous ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB,
carried in a :class:`Frame` with its index and pts. Inside a stage float32 in [0, 1] is fine; the
conversions to and from it are here too, so nobody else swaps channels or calls ``astype(np.uint8)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from core.errors import UnsupportedVideoError

#: FFmpeg colour-matrix names we decode and encode with; unknown tags fall back by frame height.
_MATRIX_BY_TAG = {
    1: "ITU709",  # AVCOL_SPC_BT709
    5: "ITU601",  # BT470BG
    6: "SMPTE170M",
    7: "SMPTE240M",
    9: "BT2020",  # BT2020_NCL
    10: "BT2020",
}


@dataclass(frozen=True)
class Frame:
    """One RGB frame on its way through the pipeline.

    ``rgb`` is (H, W, 3) uint8, C-contiguous; ``index`` counts frames from 0 in presentation order;
    ``pts`` and ``duration`` are in the source stream's ``time_base``.
    """

    rgb: np.ndarray
    index: int
    pts: int
    time_base: Fraction
    duration: int = 0


@dataclass(frozen=True)
class ColorTags:
    """How a stream's YUV maps to RGB: a matrix (FFmpeg ``AVColorSpace`` value) and a range.

    ``matrix`` 1 = BT.709, 5/6 = BT.601; ``full_range`` False = limited (16-235) "TV" range.
    ``primaries`` and ``trc`` are only carried through to the output's tags.
    """

    matrix: int
    full_range: bool
    primaries: int = 2
    trc: int = 2

    @property
    def sws_name(self) -> str:
        return _MATRIX_BY_TAG.get(self.matrix, "ITU601")

    @property
    def label(self) -> str:
        names = {1: "bt709", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
        return f"{names.get(self.matrix, 'unknown')}/{'full' if self.full_range else 'limited'}"


def guess_color_tags(colorspace: int, color_range: int, height: int, primaries: int = 2, trc: int = 2) -> ColorTags:
    """Resolve untagged streams the way players do: BT.709 from 720 lines up, BT.601 below."""
    matrix = colorspace if colorspace in _MATRIX_BY_TAG else (1 if height >= 720 else 6)
    if primaries == 2:  # unspecified: tag consistently with the matrix we chose
        primaries = 1 if matrix == 1 else 6 if matrix in (5, 6) else primaries
    if trc == 2:
        trc = 1 if matrix == 1 else 6 if matrix in (5, 6) else trc
    return ColorTags(matrix=matrix, full_range=color_range == 2, primaries=primaries, trc=trc)


def av_to_rgb(frame: av.VideoFrame, tags: ColorTags, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Decode-side conversion: any pixel format (8/10-bit, 4:2:0/4:4:4) to (H, W, 3) uint8 RGB.

    The stream's matrix and range are passed explicitly: swscale otherwise assumes BT.601 limited.
    ``reformatter``: one kept by the caller for a whole stream, so swscale's context (filters, threads) is
    set up once instead of per frame (the same pixels, ~0.2 ms a 720p frame less).
    """
    return _decode_to(frame, tags, "rgb24", reformatter)


def av_to_rgbx(frame: av.VideoFrame, tags: ColorTags, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """:func:`av_to_rgb` with 4-byte pixels: (H, W, 4) uint8 R, G, B and a 4th byte to ignore.

    The same R, G, B values as :func:`av_to_rgb`. Not the frame contract: only for per-pixel table
    lookups, which read one aligned 32-bit word a pixel (see ``core.color.lookup_rgbx``).
    """
    return _decode_to(frame, tags, "rgba", reformatter)


def _decode_to(frame: av.VideoFrame, tags: ColorTags, fmt: str, reformatter: VideoReformatter | None) -> np.ndarray:
    """The one swscale call of the decode side: the stream's matrix and range in, full-range RGB out."""
    out = (reformatter or VideoReformatter()).reformat(
        frame,
        format=fmt,
        src_colorspace=tags.sws_name,
        src_color_range=2 if tags.full_range else 1,
        dst_color_range=2,
        interpolation="BICUBIC",
    ).to_ndarray()
    return np.ascontiguousarray(out)


def rgb_to_av(rgb: np.ndarray, tags: ColorTags, pix_fmt: str,
              reformatter: VideoReformatter | None = None) -> av.VideoFrame:
    """Encode-side conversion with the same matrix and range the input was decoded with.

    ``reformatter``: as in :func:`av_to_rgb` (a per-stream swscale context; ~0.7 ms a 720p frame less).
    """
    if pix_fmt == "rgb24":
        return av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return _packed_to_av(rgb, "rgb24", tags, pix_fmt, reformatter)


def rgbx_to_av(rgbx: np.ndarray, tags: ColorTags, pix_fmt: str,
               reformatter: VideoReformatter | None = None) -> av.VideoFrame:
    """:func:`rgb_to_av` for (H, W, 4) uint8 pixels whose 4th byte is ignored: the same output as
    :func:`rgb_to_av` of their R, G, B, and cheaper to convert (~0.5 ms a 720p frame)."""
    return _packed_to_av(rgbx, "rgba", tags, pix_fmt, reformatter)


def _packed_to_av(pixels: np.ndarray, fmt: str, tags: ColorTags, pix_fmt: str,
                  reformatter: VideoReformatter | None) -> av.VideoFrame:
    # zero-copy wrap (from_ndarray's copy costs ~3 ms at 720p); the reformat below makes the new frame
    frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(pixels), format=fmt)
    reformatter = reformatter or VideoReformatter()
    if av.VideoFormat(pix_fmt).is_rgb:  # lossless RGB paths (FFV1 bgr0, libx264rgb): no matrix involved
        return reformatter.reformat(frame, format=pix_fmt)
    return reformatter.reformat(
        frame,
        format=pix_fmt,
        src_colorspace=tags.sws_name,
        dst_colorspace=tags.sws_name,
        src_color_range=2,
        dst_color_range=2 if tags.full_range else 1,
        interpolation="BICUBIC",
    )


def check_rgb(rgb: np.ndarray, what: str = "frame") -> None:
    """Raise unless ``rgb`` honours the frame contract."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"{getattr(rgb, 'shape', type(rgb))} {getattr(rgb, 'dtype', '')}".strip()
        raise UnsupportedVideoError(f"{what}: expected (H, W, 3) uint8 RGB, got {got}")


def to_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [0, 1]; a new array, the input is untouched."""
    return rgb.astype(np.float32) * np.float32(1.0 / 255.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float32 [0, 1] -> uint8 with rounding and clipping; C-contiguous."""
    return np.ascontiguousarray(np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8))


def gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma (BT.601 weights, as OpenCV)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def gray_to_rgb(g: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8 by repeating the channel."""
    return cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)


def rotate_upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, FFmpeg's convention) so the frame is upright."""
    turns = (round(rotation / 90) % 4)
    if turns == 0:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=turns))


def pad_even(rgb: np.ndarray) -> np.ndarray:
    """Pad odd widths/heights to even by repeating the last row/column (4:2:0 encoders need even sizes)."""
    h, w = rgb.shape[:2]
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return rgb
    return np.ascontiguousarray(np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge"))


def rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    """For OpenCV's image writers, which expect BGR."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    """From OpenCV's image readers, which return BGR."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def hwc_to_nchw(x: np.ndarray) -> np.ndarray:
    """(H, W, C) image -> (1, C, H, W) float32, C-contiguous: a batch of one for a network; a new array."""
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def nchw_to_hwc(x: np.ndarray) -> np.ndarray:
    """(1, C, H, W) network output -> (H, W, C) float32, C-contiguous; a new array."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"expected (1, C, H, W), got {x.shape}")
    return np.ascontiguousarray(x[0].transpose(1, 2, 0), dtype=np.float32)


def to_model(rgb: np.ndarray, out: np.ndarray, bgr: bool, gain: np.ndarray, offset: np.ndarray) -> None:
    """(H, W, 3) float32 RGB in [0, 1] -> a network's (3, H, W) float32 input, written into ``out``.

    ``bgr``: the model takes B, G, R (the flip is a view, no copy). ``gain``, ``offset``: (3,) float32 in the
    model's channel order, ``model = x * gain + offset`` (range, mean and std folded into one multiply-add,
    see ``core.ml.convention``); an all-zero offset is skipped, so 0..1 and 0..255 are a single multiply.
    """
    src = rgb.transpose(2, 0, 1)
    if bgr:
        src = src[::-1]
    np.multiply(src, gain[:, None, None], out=out)
    if offset.any():
        np.add(out, offset[:, None, None], out=out)


def from_model(y: np.ndarray, bgr: bool) -> np.ndarray:
    """A network's (1, 3, H, W) output -> (H, W, 3) float32 in R, G, B order, still in the model's units
    (undo them with :func:`from_model_units` once the tiles are summed); a new array."""
    hwc = nchw_to_hwc(y)
    return hwc[..., ::-1] if bgr else hwc


def from_model_units(total: np.ndarray, weight: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Weighted sums of model-unit pixels -> float32 RGB in [0, 1], clipped: ``(total / weight - offset) / gain``.

    ``total``: (H, W, 3) float32, tile outputs times their weights; ``weight``: (H, W, 1) the weights' sum;
    ``gain``, ``offset``: (3,) in R, G, B order (the inverse of :func:`to_model`). A new array.
    """
    if offset.any():
        total = total - offset * weight
    out = total / (weight * gain)
    return np.clip(out, 0.0, 1.0, out=out)
