"""ONNX Runtime sessions for image-to-image models, and tiled inference that hides the seams.

A model's input contract (:class:`InputSpec`) is read from its graph: the input name, NCHW layout, and a
fixed (H, W) when the spatial axes are integers or None when they are symbolic (dynamic). What a pixel is
(channel order, value range, mean/std, minimum size: a :class:`~core.ml.convention.Convention`) comes per
field from explicit arguments, else the registry entry, else the sidecar ``<model>.json``, else what the graph
shows (an ImageNet mean added in B, G, R order means BGR), else RGB 0..255 (:mod:`core.ml.convention`). A fixed input
smaller than :data:`MIN_MODEL_SIDE` on a side is refused: tiles that small run the model once per few pixels
(a 1x1 model took 85 s for 100 tiny frames and would never finish a 720p clip).

Providers: CUDA only when ONNX Runtime lists it *and* NVML sees a GPU *and* the session really loaded
it; otherwise CPU. ORT's own logging is silenced to errors. Sessions are created once per
(model content, provider, convention) and shared by every caller and thread in the process (ORT's ``run`` is
thread-safe); the CPU provider's thread settings are :func:`cpu_session_options`'s.

:func:`run_tiled` cuts a frame into overlapping tiles (reflection-padded to a fixed model's size),
runs each, and blends them with linear-ramp (feathered) weights; :func:`run_tiled_batch` does the same for
several frames, their tiles stacked into batches of up to ``batch`` (one call, one upload and one download
per batch: what keeps a GPU busy between frames). The tile size comes from free memory; an out-of-memory
error halves the batch, then the tile, then falls back to CPU, then raises :class:`ModelError` (a failure of
ours, exit 1); a model the user gave that we cannot use raises :class:`BadModelError` (exit 2).

On CUDA a session runs through IO binding (:meth:`ModelSession.run`): each thread keeps a device buffer per
input shape, filled in place, and the output lands in a device buffer the graph writes once and is then
copied back in one transfer. ORT's CPU provider reads NumPy memory directly, so there a plain ``run`` is
already copy-free. Batched and single runs give the same bytes on CPU (ORT's convolutions loop over the
batch); on a GPU cuDNN may pick other algorithms per batch size, so bits can differ there.
``onnxruntime`` (or ``onnxruntime-gpu``) is imported only when a session is made.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import BadModelError, ModelError
from core.fingerprint import file_sha256
from core.ml.convention import DEFAULT, Convention, read_sidecar
from core.ml.convention import resolve as resolve_convention
from core.video.frames import from_model, from_model_units, to_model

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: Feathered overlap between tiles, in pixels (each side of a seam ramps over this width).
DEFAULT_OVERLAP = 32
#: Smallest tile tried after out-of-memory halvings; largest tile the memory heuristic picks.
MIN_TILE = 64
MAX_TILE = 1024
#: Smallest fixed model input (and tile side) accepted, pixels a side.
MIN_MODEL_SIDE = 16
#: Dynamic models get tiles padded to this multiple: fast-style nets downsample by 4 and upsample back.
PAD_MULTIPLE = 8
#: Memory heuristic: a fast-style net at fp32 keeps roughly 4 KiB of activations and conv scratch per
#: input pixel alive; a tile may use a quarter of the free memory. Side = sqrt(free / 4 / 4 KiB).
BYTES_PER_PIXEL = 4096
MEMORY_SHARE = 0.25


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: input ``name`` and ``output`` name, ``layout`` "NCHW", ``size`` a fixed (H, W)
    or None when dynamic, ``batch`` a fixed batch size (runs are padded to it) or None when any, and its
    pixels' ``convention`` (every field set: channels, range, mean, std, min_size)."""

    name: str
    output: str
    layout: str = "NCHW"
    size: tuple[int, int] | None = None
    batch: int | None = None
    convention: Convention = DEFAULT

    @property
    def channels(self) -> str:
        """"RGB" or "BGR"."""
        return self.convention.channels or "RGB"

    @property
    def value_range(self) -> float:
        """255.0 (pixels 0..255), 1.0 (0..1) or -1.0 (-1..1)."""
        return self.convention.range if self.convention.range is not None else 255.0


class ModelSession:
    """One ONNX Runtime session on one provider, with its model's :class:`InputSpec`. Shared by threads: its
    only changing state is each thread's own bound buffers (on a device)."""

    def __init__(self, path: Path, ort_session: Any, spec: InputSpec, provider: str, device: str | None = None,
                 origin: dict[str, str] | None = None) -> None:
        self.path = path
        self.spec = spec
        #: per convention field, where it came from ("explicit", "sidecar", "detected: ...", "default")
        self.origin = origin or {}
        self.provider = provider
        #: where bound inputs and outputs live: "cuda" on the CUDA provider, None (plain ``run``) on CPU
        self.device = device if device is not None else ("cuda" if provider == CUDA else None)
        self._session = ort_session
        self._local = threading.local()  # per-thread bindings: sessions are shared by the prepare threads

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 in the model's range -> (N, 3, H, W) float32 output."""
        if self.device is None:
            return self._session.run([self.spec.output], {self.spec.name: x})[0]
        return self._run_bound(np.ascontiguousarray(x, np.float32))

    def _run_bound(self, x: np.ndarray) -> np.ndarray:
        """One run through IO binding, with the input and output buffers of this shape on ``device``, made
        once per thread and shape and reused: no allocation or graph-side copy per frame, one upload and one
        download."""
        import onnxruntime as ort

        bound = self._local.__dict__.setdefault("bound", {})
        if x.shape not in bound:
            if len(bound) >= 4:  # a few shapes at most (whole-frame and edge tiles); never grow without end
                bound.clear()
            # a buffer of its own: on the CPU, ortvalue_from_numpy would alias (and later overwrite) the caller's
            src, dst = (ort.OrtValue.ortvalue_from_shape_and_type(list(x.shape), np.float32, self.device, 0)
                        for _ in range(2))
            binding = self._session.io_binding()
            binding.bind_ortvalue_input(self.spec.name, src)
            binding.bind_ortvalue_output(self.spec.output, dst)
            bound[x.shape] = (binding, src, dst)
        binding, src, dst = bound[x.shape]
        src.update_inplace(x)
        self._session.run_with_iobinding(binding)
        out = dst.numpy()  # from a device: a fresh host copy; from host memory: a view of the reused buffer
        return out.copy() if self.device == "cpu" else out

    def __repr__(self) -> str:
        return f"ModelSession({self.path.name!r}, {self.provider}, {self.spec})"


_SESSIONS: dict[tuple[str, str, Convention], ModelSession] = {}
_LOCK = threading.Lock()


def get_session(path: str | Path, value_range: float | None = None, provider: str | None = None, *,
                convention: Convention | None = None, declared: Convention | None = None) -> ModelSession:
    """The process-wide session for the ONNX model at ``path`` (created on first use, then shared).

    ``value_range``: 255, 1 or -1 (-1..1) to override the sidecar (a shorthand for ``convention``'s range);
    ``convention``: explicit settings, which beat ``declared`` (the registry entry's), the sidecar and
    detection, per field (see :mod:`core.ml.convention`). ``provider``: force ``CPUExecutionProvider`` (the
    OOM fallback); None = :func:`choose_provider`. One session per (model content, provider, resolved
    convention). Raises BadModelError for a missing, unreadable or unsupported model or a bad sidecar.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise BadModelError(f"model {path}: no such file")
    provider = provider or choose_provider()
    explicit = convention or Convention()
    if value_range:
        explicit = replace(explicit, range=float(value_range))
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise BadModelError(f"model {path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    conv, origin = resolve_convention(path, explicit, declared)
    key = (digest, provider, conv)
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = _open(path, provider, conv, origin)
        return _SESSIONS[key]


def choose_provider() -> str:
    """CUDA when ORT offers it and NVML sees a GPU; else CPU. Never prints."""
    import onnxruntime as ort

    if CUDA in ort.get_available_providers() and _nvml_free_bytes() is not None:
        return CUDA
    return CPU


def sidecar_range(path: Path) -> float:
    """The value range from ``<model>.json`` (``{"range": 255}``, ``1`` or ``-1``); 255 without one or
    without the key. Errors name the sidecar and what is wrong (:func:`core.ml.convention.read_sidecar`)."""
    side = read_sidecar(path)
    return side.range if side is not None and side.range is not None else 255.0


def read_spec(ort_session: Any, path: Path, convention: Convention | float) -> InputSpec:
    """The input contract from the graph: one float32 NCHW 3-channel input; spatial axes fixed or dynamic, a
    fixed size at least :data:`MIN_MODEL_SIDE` a side. Raises BadModelError naming the model otherwise."""
    inputs, outputs = ort_session.get_inputs(), ort_session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise BadModelError(f"model {path}: expected one image input, got {len(inputs)} inputs")
    inp = inputs[0]
    shape = list(inp.shape)
    if inp.type != "tensor(float)" or len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise BadModelError(f"model {path}: expected a float32 (N, 3, H, W) input, got {inp.type} {shape}")
    fixed = [isinstance(d, int) and d > 0 for d in shape[2:]]
    if fixed[0] != fixed[1]:
        raise BadModelError(f"model {path}: one fixed and one dynamic spatial axis ({shape}) is not supported")
    size = (int(shape[2]), int(shape[3])) if all(fixed) else None
    if size is not None and min(size) < MIN_MODEL_SIDE:
        raise BadModelError(f"model {path}: its fixed input is {size[1]}x{size[0]} px; a model must take at least "
                            f"{MIN_MODEL_SIDE}x{MIN_MODEL_SIDE} (smaller tiles run it once per few pixels)")
    batch = int(shape[0]) if isinstance(shape[0], int) and shape[0] > 0 else None
    if not isinstance(convention, Convention):
        convention = Convention(channels="RGB", range=float(convention))
    return InputSpec(name=inp.name, output=outputs[0].name, size=size, batch=batch, convention=convention)


def check_external_data(path: Path) -> None:
    """Refuse a model whose external-data tensors point outside its own folder (``../../etc/passwd``, an
    absolute path, a symlink out): ONNX Runtime would read whatever file they name. Reads only the graph."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for non-ONNX bytes
        raise BadModelError(f"model {path}: not an ONNX file ({type(exc).__name__})") from None
    folder = path.parent.resolve()
    graphs, tensors = [proto.graph], []
    while graphs:  # subgraphs (If/Loop bodies) may hold initialisers too
        g = graphs.pop()
        tensors += list(g.initializer) + [a.t for n in g.node for a in n.attribute if a.HasField("t")]
        graphs += [a.g for n in g.node for a in n.attribute if a.HasField("g")]
        graphs += [sub for n in g.node for a in n.attribute for sub in a.graphs]
    for t in tensors:
        if not uses_external_data(t):
            continue
        location = ExternalDataInfo(t).location
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise BadModelError(f"model {path}: tensor {t.name!r} reads external data from {location!r}, outside "
                                f"the model's folder; refused")


def _open(path: Path, provider: str, convention: Convention, origin: dict[str, str]) -> ModelSession:
    import onnxruntime as ort

    check_external_data(path)
    ort.set_default_logger_severity(3)
    opts = cpu_session_options() if provider == CPU else ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: no provider-probing warnings on stderr
    providers = [provider, CPU] if provider != CPU else [CPU]
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own pybind types (InvalidGraph, Fail, ...)
        raise BadModelError(f"model {path}: ONNX Runtime cannot load it: {_first_line(exc)}") from None
    used = sess.get_providers()[0]
    if used != provider:
        log.info("model %s: %s did not load, running on %s", path.name, provider, used)
    return ModelSession(path, sess, read_spec(sess, path, convention), used, origin=origin)


#: intra-op threads of a CPU session; None = the cores this process may use (see :func:`set_cpu_threads`)
_CPU_THREADS: int | None = None


def set_cpu_threads(n: int) -> None:
    """Threads each CPU session made from now on may use: a render pool gives each of its worker processes its
    share of the cores (``cores // workers``, as for OpenCV), so concurrent chunks never oversubscribe them."""
    global _CPU_THREADS
    _CPU_THREADS = max(1, int(n))


def cpu_session_options() -> Any:
    """ORT session options for the CPU provider: ``intra_op_num_threads`` = this process's share of the cores,
    one inter-op thread, sequential execution, and **no spin-waiting**.

    Why: a fast-style net is a chain of convolutions, so the parallel executor and inter-op threads find
    nothing to overlap; all the parallelism is inside each convolution (intra-op). ORT's default spins its
    intra-op threads after every op, waiting for the next: beside a second chunk's process (or the chunk's own
    decode, prepare and encode threads) the spinning threads take the cores that the other process needs.
    Measured on this 2-core machine, shared with other jobs (load average about 10): sketch-v1 on a 1280x720
    frame, frames/s of all processes together (each process's median of 4 runs after a warm-up), the settings
    alternated, median of 3 rounds:

    ==========================  =========  ===========
    setting (per process)       1 process  2 processes
    ==========================  =========  ===========
    ORT default (spinning)      0.47       0.42
    intra 2, spinning           0.47       0.45
    intra 2, no spinning        0.61       0.51
    intra 1, no spinning        0.60       0.61
    ==========================  =========  ===========

    With ORT's defaults two chunks at once were slower than one (0.42 vs 0.47); so were two processes that
    each took both cores without spinning (0.51 vs 0.61). Two processes with one core's share each (what the
    render pool sets: ``cores // workers``) ran as fast as one process with both cores (0.61 vs 0.61), and 30 %
    faster than ORT's defaults. An earlier, more loaded run (load 8 to 16) ranked them the same way: spinning
    made the pair slower than one process (0.34 vs 0.39 frames/s). The load dominates the absolute numbers;
    they rank the settings, they are no benchmark.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _CPU_THREADS or _cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """An ORT message as one line: its first non-empty line, clipped (some span a graph dump)."""
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return line if len(line) <= limit else line[:limit] + "..."


# ---- memory --------------------------------------------------------------------------------------


def _nvml_free_bytes() -> int | None:
    """Free memory of GPU 0 from NVML (core.hardware); None, quietly, when nvidia-ml-py or a GPU is missing."""
    from core.hardware import probe_gpus

    gpus, _ = probe_gpus()
    return gpus[0].memory_free if gpus else None


def _ram_available_bytes() -> int:
    """MemAvailable from /proc/meminfo; 2 GiB when it cannot be read (not Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 2 << 30


#: most tiles one run takes: a few keep a GPU busy, more only add latency and memory
MAX_BATCH = 8


def auto_batch(provider: str, tile_pixels: int) -> int:
    """Tiles a run may take. 1 on CPU: ORT's threads already spread one image's convolutions over the cores
    (two 720p frames as one batch ran no faster than one after the other here). On a GPU as many tiles as
    fit in the memory share (:data:`BYTES_PER_PIXEL` each), up to :data:`MAX_BATCH`."""
    if provider == CPU:
        return 1
    free = _nvml_free_bytes()
    if free is None:
        return 1
    return max(1, min(MAX_BATCH, int(free * MEMORY_SHARE / (BYTES_PER_PIXEL * tile_pixels))))


def auto_tile(provider: str) -> int:
    """Tile side in pixels from free memory (GPU via NVML, CPU via MemAvailable), see BYTES_PER_PIXEL;
    a multiple of PAD_MULTIPLE in [MIN_TILE, MAX_TILE]."""
    free = _nvml_free_bytes() if provider != CPU else None
    free = free if free is not None else _ram_available_bytes()
    side = int(math.sqrt(free * MEMORY_SHARE / BYTES_PER_PIXEL))
    return max(MIN_TILE, min(MAX_TILE, side // PAD_MULTIPLE * PAD_MULTIPLE))


# ---- tiling --------------------------------------------------------------------------------------


def run_tiled(session: ModelSession, rgb: np.ndarray, tile: int = 0, overlap: int = DEFAULT_OVERLAP) -> np.ndarray:
    """Run an image-to-image model on a whole frame, in feathered tiles when needed.

    ``rgb``: (H, W, 3) float32 RGB in [0, 1] (not modified). Returns (H, W, 3) float32 in [0, 1].
    ``tile``: tile side in pixels for dynamic models, 0 = from free memory (a fixed-size model's tiles
    are its size). ``overlap``: feather width in pixels. On out-of-memory the tile is halved down to
    MIN_TILE, then the model moves to CPU; after that a ModelError.
    """
    return run_tiled_batch(session, [rgb], tile, overlap, batch=1)[0]


def run_tiled_batch(session: ModelSession, frames: list[np.ndarray], tile: int = 0, overlap: int = DEFAULT_OVERLAP,
                    batch: int = 0) -> list[np.ndarray]:
    """:func:`run_tiled` on several frames of one size, their tiles run ``batch`` at a time (0: as many as
    :func:`auto_batch` allows; a graph with a fixed batch size gets that). Out of memory: the batch halves
    first, then the tile, then the model moves to CPU."""
    if not frames:
        return []
    for rgb in frames:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape != frames[0].shape:
            raise ValueError(f"expected (H, W, 3) float RGB frames of one size, got {rgb.shape}")
    side = tile or auto_tile(session.provider)
    per_run = batch
    while True:
        th, tw = _tile_shape(session.spec, *frames[0].shape[:2], side)
        per_run = session.spec.batch or per_run or auto_batch(session.provider, th * tw)
        try:
            return _tiled(session, frames, (th, tw), overlap, per_run)
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise
            if per_run > 1 and not session.spec.batch:
                log.warning("model %s: out of memory at %d tiles a run, retrying at %d", session.path.name, per_run,
                            per_run // 2)
                per_run //= 2
            elif session.spec.size is None and side // 2 >= MIN_TILE:
                log.warning("model %s: out of memory at tile %d, retrying at %d", session.path.name, side, side // 2)
                side = side // 2 // PAD_MULTIPLE * PAD_MULTIPLE
            elif session.provider != CPU:
                log.warning("model %s: out of memory on %s, falling back to CPU", session.path.name, session.provider)
                session = get_session(session.path, provider=CPU, convention=session.spec.convention)
                side = tile or auto_tile(CPU)
            else:
                raise ModelError(f"model {session.path}: out of memory even at tile {side} on CPU: {exc}") from None


def frames_per_run(session: ModelSession, height: int, width: int, tile: int = 0,
                   overlap: int = DEFAULT_OVERLAP) -> int:
    """Whole frames of this size whose tiles fit in one batch (:func:`auto_batch`): what a caller holding
    several frames should hand :func:`run_tiled_batch` at once. 1 on CPU, and for a fixed batch-1 graph."""
    th, tw = _tile_shape(session.spec, height, width, tile or auto_tile(session.provider))
    ph, pw = max(height, th), max(width, tw)
    per_frame = len(_starts(ph, th, overlap)) * len(_starts(pw, tw, overlap))
    per_run = session.spec.batch or auto_batch(session.provider, th * tw)
    return max(1, per_run // per_frame)


def _is_out_of_memory(exc: BaseException) -> bool:
    """ORT reports allocation failures as RuntimeException/Fail with a message about memory."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return type(exc).__module__.startswith("onnxruntime") and ("memory" in text or "alloc" in text)


def _tile_shape(spec: InputSpec, h: int, w: int, side: int) -> tuple[int, int]:
    if spec.size is not None:
        return spec.size
    least = _round_up(spec.convention.min_size or 0)  # a model that needs more pixels gets reflection-padded
    if h * w <= side * side:  # the whole frame is one tile
        return max(least, _round_up(h)), max(least, _round_up(w))
    return max(least, min(side, _round_up(h))), max(least, min(side, _round_up(w)))


def _tiled(session: ModelSession, frames: list[np.ndarray], tile: tuple[int, int], overlap: int,
           per_run: int) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    th, tw = tile
    spec = session.spec
    padded = [_pad_to(rgb, max(h, th), max(w, tw)) for rgb in frames]
    ph, pw = padded[0].shape[:2]
    acc = [np.zeros((ph, pw, 3), np.float32) for _ in frames]
    weight = np.zeros((ph, pw, 1), np.float32)  # the same tiles on every frame: one weight map
    bgr = spec.convention.bgr
    gain, offset = spec.convention.fold()  # the model's channel order
    gain_rgb, offset_rgb = (gain[::-1], offset[::-1]) if bgr else (gain, offset)
    origins = [(y0, x0) for y0 in _starts(ph, th, overlap) for x0 in _starts(pw, tw, overlap)]
    ramps = {}
    for y0, x0 in origins:
        ramp = _ramp(th, overlap, y0 > 0, y0 + th < ph)[:, None] * _ramp(tw, overlap, x0 > 0, x0 + tw < pw)
        ramps[y0, x0] = ramp[..., None]
        weight[y0:y0 + th, x0:x0 + tw] += ramps[y0, x0]
    tiles = [(i, y0, x0) for i in range(len(frames)) for y0, x0 in origins]
    for k in range(0, len(tiles), per_run):
        part = tiles[k:k + per_run]
        x = np.zeros((spec.batch or len(part), 3, th, tw), np.float32)  # a fixed-batch graph's last run: padded
        for j, (i, y0, x0) in enumerate(part):
            to_model(padded[i][y0:y0 + th, x0:x0 + tw], x[j], bgr, gain, offset)
        y = session.run(x)
        if y.shape != x.shape:
            raise BadModelError(f"model {session.path}: output {y.shape} does not match input {x.shape} (an "
                                "image-to-image model keeps the size)")
        for j, (i, y0, x0) in enumerate(part):
            acc[i][y0:y0 + th, x0:x0 + tw] += from_model(y[j:j + 1], bgr) * ramps[y0, x0]
    return [from_model_units(a[:h, :w], weight[:h, :w], gain_rgb, offset_rgb) for a in acc]


def _round_up(n: int) -> int:
    return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE


def _pad_to(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """Reflect-pad at the bottom and right to (h, w): reflection keeps edge statistics, unlike zeros."""
    dh, dw = h - rgb.shape[0], w - rgb.shape[1]
    if not (dh or dw):
        return rgb
    mode = "reflect" if min(rgb.shape[:2]) > 1 else "edge"  # reflect needs two pixels to mirror
    return np.pad(rgb, ((0, dh), (0, dw), (0, 0)), mode=mode)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along an axis: stride ``tile - overlap``, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, tile - min(overlap, tile // 2))
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(n: int, overlap: int, before: bool, after: bool) -> np.ndarray:
    """(n,) float32 weights: 1 inside, a linear ramp towards 0 over ``overlap`` px on sides with a neighbour.

    Ramp values start at 0.5/overlap (never 0) so every pixel keeps a positive total weight.
    """
    r = np.ones(n, np.float32)
    if overlap <= 0:
        return r
    i = np.arange(n, dtype=np.float32) + 0.5
    if before:
        r = np.minimum(r, i / overlap)
    if after:
        r = np.minimum(r, i[::-1] / overlap)
    return r
