"""ONNX sessions, tiled inference and the neural style, on tiny models built here with the onnx helper API.

The models compute per-pixel results (invert, a 1x1 colour mix), so every tiled output can be compared
with the exact answer: a seam, an off-by-one tile or a swapped channel shows as a large error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import BadModelError, ConfigError, ModelError
from core.ml import session as ml_session
from core.render.pipeline import render
from core.render.spec import build_job
from core.video.frames import to_float
from core.video.probe import probe
from core.video.synthetic import ClipSpec, make_clip
from stylizers import build_params
from stylizers.fast_style import FastStyle, FastStyleParams
from tests.conftest import SHARED, psnr

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

MODELS = SHARED / "models"
#: Render workers (forkserver processes) see only the real registry, not this module's monkeypatch.
MIX = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.0, 0.4, 0.6]], np.float32)


def save_model(path: Path, node_fn, h: int | str = "H", w: int | str = "W", n: int | str = "N") -> Path:
    """An NCHW float32 model ``x -> node_fn(x)`` with its axes fixed (ints) or dynamic (names)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, 3, h, w])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, 3, h, w])
    nodes, inits = node_fn()
    graph = helper.make_graph(nodes, "m", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def invert(top: float):
    def fn():
        c = helper.make_tensor("c", TensorProto.FLOAT, [], [top])
        return [helper.make_node("Sub", ["c", "x"], ["y"])], [c]
    return fn


def mix():
    wt = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], MIX.ravel().tolist())
    return [helper.make_node("Conv", ["x", "w"], ["y"])], [wt]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {
        "dynamic": save_model(root / "invert.onnx", invert(255.0)),
        "fixed": save_model(root / "invert64.onnx", invert(255.0), 64, 64),
        "mix": save_model(root / "mix.onnx", mix),
        "unit": save_model(root / "invert01.onnx", invert(1.0)),
        "batch3": save_model(root / "mix_b3.onnx", mix, n=3),
    }
    (root / "invert01.json").write_text(json.dumps({"range": 1}))
    return out


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: gradients plus noise, so misplaced tiles show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / max(1, w - 1), y / max(1, h - 1), 0.5 + 0.5 * np.sin(x / 7 + y / 5)], axis=2)
    return np.clip(img + rng.normal(0, 0.05, img.shape).astype(np.float32), 0, 1).astype(np.float32)


# ---- sessions ------------------------------------------------------------------------------------


def test_spec(models: dict[str, Path]) -> None:
    dyn = ml_session.get_session(models["dynamic"]).spec
    assert (dyn.name, dyn.output, dyn.layout, dyn.channels, dyn.value_range, dyn.size) == \
        ("x", "y", "NCHW", "RGB", 255.0, None)
    assert ml_session.get_session(models["fixed"]).spec.size == (64, 64)
    assert ml_session.get_session(models["unit"]).spec.value_range == 1.0  # from the sidecar
    assert ml_session.get_session(models["unit"], 255).spec.value_range == 255.0  # explicit wins


def test_provider_is_cpu_and_silent(models: dict[str, Path], capfd: pytest.CaptureFixture[str]) -> None:
    assert ml_session.choose_provider() == ml_session.CPU
    assert ml_session.get_session(models["mix"]).provider == ml_session.CPU
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_sessions_cached(models: dict[str, Path]) -> None:
    a = ml_session.get_session(models["dynamic"])
    assert ml_session.get_session(str(models["dynamic"])) is a
    assert ml_session.get_session(models["fixed"]) is not a


def test_exception(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        ml_session.get_session(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"bad\.onnx") as info:
        ml_session.get_session(bad)
    assert isinstance(info.value, BadModelError) and info.value.user_error  # the user's file: exit 2
    assert "not a model" not in str(info.value)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (8, 8), (15, 64), (64, 15)])
def test_exception_fixed_input_too_small(tmp_path: Path, h: int, w: int) -> None:
    """A fixed input under 16 px a side would run the model once per few pixels (1x1: 85 s for 100 tiny
    frames, never done at 720p): refused, naming the file and its size."""
    path = save_model(tmp_path / f"tiny{h}x{w}.onnx", invert(255.0), h, w)
    with pytest.raises(BadModelError) as info:
        ml_session.get_session(path)
    msg = str(info.value)
    assert msg.startswith(f"model {path}: ") and f"fixed input is {w}x{h} px" in msg and "16x16" in msg, msg
    assert info.value.user_error and "\n" not in msg


def test_smallest_fixed_input_runs(tmp_path: Path) -> None:
    sess = ml_session.get_session(save_model(tmp_path / "m16.onnx", invert(255.0), 16, 16))
    x = frame(20, 37)
    np.testing.assert_allclose(ml_session.run_tiled(sess, x, overlap=4), 1 - x, atol=1e-5)


@pytest.mark.parametrize(("text", "why"), [("s3cr3t", "not valid JSON"), ('{"range": "s3cr3t"}', "got str"),
                                           ('["s3cr3t"]', 'no "range" key'), ('{"range": 7}', "got 7")])
def test_exception_sidecar_never_quoted(models: dict[str, Path], tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(models["dynamic"].read_bytes())
    path.with_suffix(".json").write_text(text)
    with pytest.raises(BadModelError, match=r"m\.json") as info:
        ml_session.get_session(path)
    assert why in str(info.value) and "s3cr3t" not in str(info.value)


def _external(path: Path, location: str) -> Path:
    """The colour-mix model with its weights stored as external data at ``location`` (relative to it)."""
    from onnx.external_data_helper import set_external_data

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, mix)
    model = onnx.load(str(path))
    w = model.graph.initializer[0]
    data = w.raw_data or np.array(w.float_data, np.float32).tobytes()
    (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
    (path.parent / location).write_bytes(data)
    w.ClearField("float_data")
    w.raw_data = data
    set_external_data(w, location=location, length=len(data))
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    onnx.save(model, str(path))
    return path


def test_external_data_inside_folder_loads(tmp_path: Path) -> None:
    sess = ml_session.get_session(_external(tmp_path / "m" / "mix.onnx", "weights/mix.bin"))
    x = frame(16, 24)
    np.testing.assert_allclose(ml_session.run_tiled(sess, x), np.clip(x @ MIX.T, 0, 1), atol=1e-5)


@pytest.mark.parametrize("location", ["../outside.bin", "weights/../../outside.bin"])
def test_exception_external_data_outside_folder(tmp_path: Path, location: str) -> None:
    path = _external(tmp_path / "m" / "mix.onnx", location)
    with pytest.raises(ModelError, match="outside the model's folder"):
        ml_session.get_session(path)


def test_exception_external_data_absolute(tmp_path: Path) -> None:
    path = _external(tmp_path / "m" / "mix.onnx", "w.bin")
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = str(tmp_path / "m" / "w.bin")
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="outside the model's folder"):
        ml_session.get_session(path)


# ---- tiling --------------------------------------------------------------------------------------


def test_tiled_equals_whole(models: dict[str, Path]) -> None:
    sess = ml_session.get_session(models["dynamic"])
    x = frame(150, 197)
    whole = ml_session.run_tiled(sess, x, tile=1024)
    tiled = ml_session.run_tiled(sess, x, tile=64, overlap=16)
    assert tiled.shape == x.shape and tiled.dtype == np.float32
    assert psnr(whole * 255, tiled * 255) >= 40
    np.testing.assert_allclose(whole, 1 - x, atol=1e-5)


@pytest.mark.parametrize("size", [(150, 97), (200, 300), (40, 30), (64, 64), (65, 129), (1, 7)])
def test_fixed_size_any_frame(models: dict[str, Path], size: tuple[int, int]) -> None:
    sess = ml_session.get_session(models["fixed"])
    x = frame(*size)
    before = x.copy()
    out = ml_session.run_tiled(sess, x, overlap=16)
    assert out.shape == x.shape
    assert np.abs(out - (1 - x)).max() < 1e-5
    np.testing.assert_array_equal(x, before)


def test_colour_mix_keeps_channel_order(models: dict[str, Path]) -> None:
    x = frame(90, 130) * 0.5
    out = ml_session.run_tiled(ml_session.get_session(models["mix"]), x, tile=64)
    np.testing.assert_allclose(out, x @ MIX.T, atol=1e-5)


def test_unit_range_model(models: dict[str, Path]) -> None:
    x = frame(70, 90)
    out = ml_session.run_tiled(ml_session.get_session(models["unit"]), x, tile=64)
    np.testing.assert_allclose(out, 1 - x, atol=1e-5)


def test_out_of_memory_halves_tile(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    sess = ml_session.get_session(models["dynamic"])
    real, sizes = sess.run, []

    def run(x: np.ndarray) -> np.ndarray:
        sizes.append(x.shape[-1])
        if x.shape[-1] > 64:
            raise RuntimeException("Failed to allocate memory for requested buffer of size 9999999")
        return real(x)

    monkeypatch.setattr(sess, "run", run)
    x = frame(150, 200)
    out = ml_session.run_tiled(sess, x, tile=128)
    assert sizes[0] == 128 and set(sizes[1:]) == {64}
    np.testing.assert_allclose(out, 1 - x, atol=1e-5)

    monkeypatch.setattr(ml_session, "MIN_TILE", 128)
    with pytest.raises(ModelError, match="out of memory") as info:
        ml_session.run_tiled(sess, x, tile=128)
    assert not isinstance(info.value, BadModelError) and not info.value.user_error  # ours to fix: exit 1


def test_other_errors_propagate(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    sess = ml_session.get_session(models["dynamic"])

    def run(x: np.ndarray) -> np.ndarray:
        raise ValueError("boom")

    monkeypatch.setattr(sess, "run", run)
    with pytest.raises(ValueError, match="boom"):
        ml_session.run_tiled(sess, frame(20, 20))


@pytest.mark.parametrize("model", ["mix", "batch3", "fixed", "bundled"])
def test_tiles_of_several_frames_in_one_run_equal_one_frame_at_a_time(models: dict[str, Path], model: str) -> None:
    """Batches of tiles from several frames (any split, the last run short or padded for a fixed-batch
    graph) give the bytes of one frame at a time: a tile run against the wrong frame or place would show."""
    path = Path(__file__).resolve().parents[2] / "models" / "sketch-v1.onnx" if model == "bundled" else models[model]
    sess = ml_session.get_session(path)
    frames = [frame(90, 150, seed=i) for i in range(3)]
    one = [ml_session.run_tiled(sess, x, tile=64, overlap=16) for x in frames]
    seen: list[int] = []
    real = sess.run
    for batch in (2, 5, 0):
        try:
            sess.run = lambda x: seen.append(x.shape[0]) or real(x)
            got = ml_session.run_tiled_batch(sess, frames, tile=64, overlap=16, batch=batch)
        finally:
            del sess.run
        assert all(np.array_equal(a, b) for a, b in zip(one, got, strict=True))
    if model == "batch3":
        assert set(seen) == {3}  # a fixed batch: always 3 in, the last run padded
    elif model != "fixed":
        assert 5 in seen and 1 in seen  # 5 at a time; auto on CPU: one tile a run
    assert ml_session.frames_per_run(sess, 90, 150, tile=64, overlap=16) == 1  # CPU: a frame a call


def test_gpu_batch_follows_free_memory(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the tiles a run takes come from free memory (capped), and whole frames per call from that."""
    monkeypatch.setattr(ml_session, "_nvml_free_bytes", lambda: 80 << 30)  # an H100's worth
    assert ml_session.auto_batch(ml_session.CUDA, 720 * 1280) == 5  # 20 GiB / 3.8 GB a 720p frame
    monkeypatch.setattr(ml_session, "_nvml_free_bytes", lambda: 8 << 30)
    assert ml_session.auto_batch(ml_session.CUDA, 720 * 1280) == 1  # less than one frame's share: still one
    assert ml_session.auto_batch(ml_session.CUDA, 64 * 64) == ml_session.MAX_BATCH
    assert ml_session.auto_batch(ml_session.CPU, 64 * 64) == 1
    monkeypatch.setattr(ml_session, "_nvml_free_bytes", lambda: None)
    assert ml_session.auto_batch(ml_session.CUDA, 64 * 64) == 1
    sess = ml_session.get_session(models["mix"])
    monkeypatch.setattr(ml_session, "auto_batch", lambda provider, pixels: 8)
    assert ml_session.frames_per_run(sess, 90, 150, tile=256) == 8  # a frame is one tile
    assert ml_session.frames_per_run(sess, 90, 150, tile=112, overlap=16) == 4  # 2 tiles a frame
    assert ml_session.frames_per_run(sess, 90, 150, tile=64, overlap=16) == 1  # 6 tiles a frame
    assert ml_session.frames_per_run(ml_session.get_session(models["batch3"]), 90, 150, tile=256) == 3


def test_io_binding_gives_the_same_output(models: dict[str, Path]) -> None:
    """The bound path (what the CUDA provider runs, here on CPU memory) equals a plain run, whatever the
    order of shapes, and neither touches the caller's array nor hands back a buffer it later overwrites."""
    plain = ml_session.get_session(Path(__file__).resolve().parents[2] / "models" / "sketch-v1.onnx")
    bound = ml_session.ModelSession(plain.path, plain._session, plain.spec, plain.provider, device="cpu")
    assert plain.device is None and bound.device == "cpu"
    xs = [np.stack([frame(48, 64, seed=i).transpose(2, 0, 1)] * n) for i, n in ((0, 1), (1, 2), (2, 1))]
    kept = [x.copy() for x in xs]
    outs = [bound.run(x) for x in xs]
    assert all(np.array_equal(x, k) for x, k in zip(xs, kept, strict=True))
    assert all(np.array_equal(o, plain.run(x)) for o, x in zip(outs, xs, strict=True))
    assert not np.array_equal(outs[0], outs[2])  # the first result was not overwritten by the third run


def test_out_of_memory_halves_the_batch_first(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    sess = ml_session.get_session(models["dynamic"])
    real, shapes = sess.run, []

    def run(x: np.ndarray) -> np.ndarray:
        shapes.append(x.shape[0])
        if x.shape[0] > 2:
            raise RuntimeException("Failed to allocate memory for requested buffer of size 9999999")
        return real(x)

    monkeypatch.setattr(sess, "run", run)
    frames = [frame(40, 50, seed=i) for i in range(5)]
    outs = ml_session.run_tiled_batch(sess, frames, tile=128, batch=8)
    assert shapes == [5, 4, 2, 2, 1]  # 8 a run (5 tiles) and 4 fail, then 2 at a time: the tile untouched
    assert all(np.allclose(o, 1 - x, atol=1e-5) for o, x in zip(outs, frames, strict=True))


def test_auto_tile() -> None:
    side = ml_session.auto_tile(ml_session.CPU)
    assert ml_session.MIN_TILE <= side <= ml_session.MAX_TILE and side % ml_session.PAD_MULTIPLE == 0


# ---- the neural style ----------------------------------------------------------------------------


def test_style_params(models: dict[str, Path]) -> None:
    params = build_params("neural", None, {"model": str(models["fixed"]), "strength": "0.5"}, "test")
    assert params.strength == 0.5
    assert FastStyle.files(params) == [str(models["fixed"].resolve())]
    assert FastStyle.files(FastStyleParams(model=str(models["unit"])))[1].endswith("invert01.json")
    with pytest.raises(ConfigError, match="no model given"):
        FastStyle(FastStyleParams(model=""))
    assert FastStyle.pin(FastStyleParams()).model == "sketch@3"  # the bundled default, pinned to its active version
    with pytest.raises(ConfigError, match="no such file"):
        FastStyle(FastStyleParams(model="nope"))
    with pytest.raises(ConfigError):
        build_params("neural", None, {"model": "x", "range": "2"}, "test")
    with pytest.raises(ConfigError, match="tile 15 is too small"):
        build_params("neural", None, {"model": "x", "tile": "15"}, "test")
    assert build_params("neural", None, {"model": "x", "tile": "16"}, "test").tile == 16


def test_style_by_name_in_studio_models(models: dict[str, Path], studio_home: Path) -> None:
    (studio_home / "models").mkdir(parents=True)
    (studio_home / "models" / "inv.onnx").write_bytes(models["dynamic"].read_bytes())
    rgb = (frame(33, 47) * 255).astype(np.uint8)
    out = FastStyle(FastStyleParams(model="inv"))(rgb, 0)
    assert np.abs(out.astype(int) - (255 - rgb.astype(int))).max() <= 1


def test_style_strength_and_no_mutation(models: dict[str, Path]) -> None:
    rgb = (frame(50, 70) * 255).astype(np.uint8)
    rgb.flags.writeable = False
    half = FastStyle(FastStyleParams(model=str(models["fixed"]), strength=0.5)).stylize(rgb, 0).base
    assert half.shape == rgb.shape and half.dtype == np.uint8 and half.flags.c_contiguous
    assert np.abs(half.astype(int) - 127.5).max() <= 1  # x + 0.5 (255 - x - x) = 127.5


def test_render_keeps_frame_count(models: dict[str, Path], tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=12, width=160, height=96))
    out = tmp_path / "neural.mp4"
    job = build_job(clip, out, "neural", "speed", {"model": str(models["dynamic"])}, chunk_seconds=0.5)
    assert str(models["dynamic"].resolve()) in job.fingerprint()["files"]
    render(job, workers=1)
    assert probe(out).frame_count == probe(clip).frame_count == 12


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_chunk_styled_several_frames_a_call_equals_one_at_a_time(tmp_path: Path, pipelined: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What a GPU does (frames batched into one run) gives a chunk of the same bytes as a frame a call, with
    the stabiliser's motion and cuts measured per frame inside the batch; here in-process, on the CPU."""
    from core.render.chunk import ChunkTask, render_chunk
    from core.render.plan import Chunk, analyze_job

    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=14, width=160, height=96, cut_at=7))
    spec = build_job(clip, tmp_path / "n.mp4", "neural", "balanced")  # the bundled sketch model, neural-mode stabilised
    analysis = analyze_job(spec)
    calls: list[int] = []
    real = FastStyle.stylize_batch
    monkeypatch.setattr(FastStyle, "stylize_batch", lambda self, f, i: calls.append(len(f)) or real(self, f, i))
    files = []
    for batch in (1, 3):
        monkeypatch.setattr(FastStyle, "batch_size", lambda self, h, w, b=batch: b)
        work = tmp_path / f"b{batch}"
        work.mkdir()
        rec = render_chunk(ChunkTask(spec, analysis, Chunk(0, 2, 14, 2), str(work), pipelined=pipelined, threads=2))
        files.append((work / rec["file"]).read_bytes())
        assert rec["frames"] == 12 and rec["cuts"] == [7]
    assert files[0] == files[1]
    assert calls.count(1) == 14 and calls.count(3) == 4 and calls.count(2) == 1  # 14 frames: 1 x 14, then 3+3+3+3+2


def test_cuda_batched_frames_match_the_cpu() -> None:
    """Where ONNX Runtime runs on a GPU: the bundled model through IO binding, several frames a run, gives
    the CPU's image (cuDNN's kernels, TF32 on recent GPUs, are not the CPU's: close, not bit for bit; a
    misplaced tile or a frame swapped within a batch would fall far below the bar)."""
    if ml_session.choose_provider() != ml_session.CUDA:
        pytest.skip("no CUDA provider with an NVIDIA GPU here (a CPU machine): the GPU path is checked where one is")
    path = Path(__file__).resolve().parents[2] / "models" / "sketch-v1.onnx"
    gpu, cpu = ml_session.get_session(path), ml_session.get_session(path, provider=ml_session.CPU)
    if gpu.provider != ml_session.CUDA:
        pytest.skip(f"the CUDA provider is listed but did not load ({gpu.provider} runs the model)")
    assert gpu.device == "cuda"
    # content shifted per frame: two frames' outputs then differ at ~18 dB, far below the bar, if swapped
    frames = [np.ascontiguousarray(np.roll(frame(360, 640, seed=i), 97 * i, axis=1)) for i in range(5)]
    per_run = ml_session.frames_per_run(gpu, 360, 640)
    assert per_run >= 1
    on_gpu = ml_session.run_tiled_batch(gpu, frames, batch=0)
    on_cpu = [ml_session.run_tiled(cpu, x) for x in frames]
    for a, b in zip(on_gpu, on_cpu, strict=True):
        assert psnr(a * 255, b * 255) > 40


# ---- a real third-party model -----------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("name", ["wml_candy.onnx", "wml_mosaic.onnx"])
@pytest.mark.parametrize("size", [(720, 1280), (272, 640)])
def test_real_fixed_720_models_tile_any_frame(name: str, size: tuple[int, int]) -> None:
    """Fixed 720x720, opset 7, 0..255 models (legacy ImageScaler/Crop ops) on 1280x720 and 640x272 frames."""
    path = MODELS / name
    if not path.is_file():
        pytest.skip(f"third-party model not found at {path} (../shared is only beside a developer's checkout)")
    rgb = (frame(*size, seed=1) * 255).astype(np.uint8)
    st = FastStyle(FastStyleParams(model=str(path)))
    assert st._session.spec.size == (720, 720) and st._session.spec.value_range == 255
    out = st(rgb, 0)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() > 10  # it styled the frame
    if size[1] > 720:  # two tiles side by side: no seam where they meet (columns 560..720 overlap)
        cols = to_float(out).mean(axis=(0, 2))
        jumps = np.abs(np.diff(cols))
        assert jumps[500:780].max() < 4 * np.median(jumps) + 0.01


@pytest.mark.shared
def test_real_candy_fixed_720() -> None:
    path = MODELS / "wml_candy.onnx"
    if not path.is_file():
        pytest.skip(f"third-party model not found at {path} (../shared is only beside a developer's checkout)")
    rgb = (frame(180, 320) * 255).astype(np.uint8)
    st = FastStyle(FastStyleParams(model=str(path)))
    assert st._session.spec.size == (720, 720)
    a, b = st(rgb, 0), st(rgb, 0)
    assert a.shape == (180, 320, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - rgb.astype(int)).mean() > 10
    np.testing.assert_array_equal(a, b)
    assert to_float(a).std() > 0.01


def test_job_pins_the_active_model_version(models: dict[str, Path], tmp_path: Path) -> None:
    """A job names the exact version it renders with; activating another later changes new jobs only."""
    from core.ml import registry

    registry.register(models["dynamic"], "pinme")
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=4, width=64, height=48))
    before = build_job(clip, tmp_path / "o.mp4", "neural", "speed", {"model": "pinme"})
    assert before.params.model == "pinme@1"
    registry.register(models["unit"], "pinme")  # v2, activated
    after = build_job(clip, tmp_path / "o.mp4", "neural", "speed", {"model": "pinme"})
    assert after.params.model == "pinme@2" and after.job_hash() != before.job_hash()
    assert FastStyle.files(before.params)[0].endswith("v1.onnx")


def test_cpu_sessions_share_the_cores_without_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU provider's settings (reasons and timings in cpu_session_options): no timing asserted here."""
    monkeypatch.setattr(ml_session, "_CPU_THREADS", None)
    opts = ml_session.cpu_session_options()
    assert opts.intra_op_num_threads == ml_session._cores() and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    ml_session.set_cpu_threads(1)
    assert ml_session.cpu_session_options().intra_op_num_threads == 1


def test_one_session_for_the_threads_of_a_chunk(models: dict[str, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def make(_: int) -> ml_session.ModelSession:
        return FastStyle(FastStyleParams(model=str(models["dynamic"]), range=255))._session

    with ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(make, range(8)))
    assert all(s is sessions[0] for s in sessions)
