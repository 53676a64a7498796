"""ONNX export with its parity check, and int8 quantisation with its quality gate.

Networks are randomly initialised (seeded, He init with the output centred on 0.5) so their outputs
spread over [0, 1]: with PyTorch's default init the compact net's output is ~0 everywhere and clamps to
black, which would make every comparison below pass vacuously. Sizes are small; each export takes ~1 s.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from core.errors import ConfigError, ModelError, OutputError  # noqa: E402
from core.ml import session as ml_session  # noqa: E402
from core.video.frames import to_float  # noqa: E402
from core.video.synthetic import ClipSpec, make_clip  # noqa: E402
from tests.conftest import decode_all  # noqa: E402
from trainer.export_onnx import ExportReport, ParityError, export  # noqa: E402
from trainer.model import COMPACT, DRAW, GRADE, INK, LOOK, Arch, Exportable, TransformerNet, parameter_count  # noqa: E402
from trainer.quantize import (  # noqa: E402
    MIN_SPEEDUP,
    QualityGateError,
    decide_int8,
    measure_speedup,
    quantize_int8,
)

#: Johnson's layout (instance norm, 9x9-like outer kernels, residual blocks), a quarter of its channels.
SMALL_JOHNSON = Arch(channels=(8, 16, 32), blocks=2, outer_kernel=5, norm="instance")
ARCHS = {"compact": COMPACT, "johnson_like": SMALL_JOHNSON, "grade": GRADE, "ink": INK, "draw": DRAW, "look": LOOK}


def seeded_net(arch: Arch, seed: int = 0) -> TransformerNet:
    """He-initialised convolutions (activations keep their scale through the ReLUs), output around 0.5."""
    net = TransformerNet(arch)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                m.bias.zero_()
        if arch.spatial:
            net.out.conv.weight.mul_(0.18)
            net.out.conv.bias.fill_(0.5)
    return net


class FrozenPixelNet(TransformerNet):
    """Adds its input's first pixel to the output: ``float()`` makes it a Python number, which the tracer
    records as a constant. The exported graph is valid ONNX and runs, but differs from torch on any other
    input: the silent failure the parity check exists for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.5 * float(x[0, 0, 0, 0])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[TransformerNet, ExportReport]]:
    """Each arch exported once, from a net left in training mode (export must not change that)."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, arch in ARCHS.items():
        net = seeded_net(arch).train()
        out[name] = (net, export(net, root / f"{name}.onnx"))
        assert net.training
    return out


@pytest.fixture(scope="module")
def user_frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Eight (H, W, 3) uint8 frames at an odd size from a seeded synthetic clip, as a user's clip gives them."""
    clip = make_clip(tmp_path_factory.mktemp("clip") / "cal.mp4", ClipSpec(width=129, height=97, frames=8,
                                                                         pix_fmt="yuv444p", seed=5))
    return decode_all(clip)


def torch_out(net: TransformerNet, x: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float32 in [0, 1] -> the deployed (clamped) output, as numpy."""
    with torch.inference_mode():
        return Exportable(net.eval())(torch.from_numpy(x)).numpy()


# ---- export --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ARCHS))
def test_smoke(exported, name: str) -> None:
    net, rep = exported[name]
    sizes = [size for size, _ in rep.max_abs_error]
    assert sizes == [(96, 128), (61, 87)] and any(h % 2 and w % 2 for h, w in sizes)
    assert all(err <= 1e-4 for _, err in rep.max_abs_error), rep.max_abs_error
    assert rep.path.is_file() and rep.file_bytes == rep.path.stat().st_size
    assert rep.parameters == parameter_count(net)
    assert json.loads(rep.sidecar.read_text()) == {"range": 1}
    assert rep.sidecar == rep.path.with_suffix(".json")
    assert sorted(p.name for p in rep.path.parent.iterdir()) == sorted([f"{n}.{e}" for n in ARCHS
                                                                        for e in ("onnx", "json")])


@pytest.mark.parametrize("name", list(ARCHS))
def test_cardinality_dynamic_axes(exported, name: str) -> None:
    """N, H and W are symbolic in the graph; channels are 3; names are the documented ones."""
    graph = onnx.load(str(exported[name][1].path)).graph
    for value, want in ((graph.input, "input"), (graph.output, "output")):
        assert [v.name for v in value] == [want]
        dims = value[0].type.tensor_type.shape.dim
        assert [d.dim_param != "" for d in dims] == [True, False, True, True]
        assert dims[1].dim_value == 3
    sess = ml_session.get_session(exported[name][1].path)
    assert (sess.spec.size, sess.spec.value_range) == (None, 1.0)


@pytest.mark.parametrize("name", list(ARCHS))
def test_ml_session_equals_torch(exported, name: str) -> None:
    """The renderer's path (get_session + run_tiled, sidecar range 1) on an odd frame matches torch.

    run_tiled reflect-pads a dynamic model's input to a multiple of PAD_MULTIPLE and crops the output, so
    torch sees the same padded frame (instance norm's statistics depend on the padding)."""
    net, rep = exported[name]
    rgb = np.random.default_rng(3).random((75, 101, 3), dtype=np.float32)
    before = rgb.copy()
    got = ml_session.run_tiled(ml_session.get_session(rep.path), rgb)
    m = ml_session.PAD_MULTIPLE
    padded = np.pad(rgb, ((0, -75 % m), (0, -101 % m), (0, 0)), mode="reflect")
    want = torch_out(net, np.ascontiguousarray(padded.transpose(2, 0, 1)[None]))[0].transpose(1, 2, 0)[:75, :101]
    assert got.shape == (75, 101, 3) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4
    assert np.mean((want > 0) & (want < 1)) > 0.2  # not a clamped-flat image: the comparison means something
    np.testing.assert_array_equal(rgb, before)


def test_exception_parity_refused(tmp_path: Path) -> None:
    """A net whose trace froze a value is refused at the first check size; no model, sidecar or temp file."""
    torch.manual_seed(0)
    net = FrozenPixelNet(SMALL_JOHNSON)
    target = tmp_path / "frozen.onnx"
    with pytest.raises(ParityError, match=r"frozen\.onnx.*96x128.*max abs error") as info:
        export(net, target)
    assert info.value.user_error is False and isinstance(info.value, ModelError)
    assert any("Python" in w for w in info.value.tracer_warnings)
    assert list(tmp_path.iterdir()) == []


def test_exception_bad_arguments(tmp_path: Path) -> None:
    net = seeded_net(COMPACT)
    with pytest.raises(ConfigError, match=r"m\.onnx.*\(0, 5\)"):
        export(net, tmp_path / "m.onnx", check_sizes=((0, 5),))
    with pytest.raises(ConfigError, match="tol"):
        export(net, tmp_path / "m.onnx", tol=-1)
    with pytest.raises(ConfigError, match=r"\.pt"):
        export(net, tmp_path / "m.pt")
    with pytest.raises(OutputError, match="missing"):
        export(net, tmp_path / "missing" / "m.onnx")
    assert list(tmp_path.iterdir()) == []


# ---- int8 ----------------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder for this test only, so leftovers of the quantiser can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_int8_gate_passes(exported, user_frames, tmp_path: Path, private_tmp: Path) -> None:
    fp32 = exported["compact"][1].path
    before = [f.copy() for f in user_frames]
    rep = quantize_int8(fp32, tmp_path / "c8.onnx", user_frames, min_psnr=25.0)
    assert rep.psnr_db >= 25.0 and rep.min_psnr == 25.0
    assert (rep.calibration_frames, rep.gate_frames) == (6, 2)
    assert 0 < rep.int8_bytes < rep.fp32_bytes and rep.int8_bytes == rep.path.stat().st_size
    assert json.loads(rep.sidecar.read_text()) == {"range": 1}
    assert list(private_tmp.iterdir()) == []
    for a, b in zip(user_frames, before, strict=True):
        np.testing.assert_array_equal(a, b)
    # the renderer runs it, and it stays close to the fp32 model on a frame it was not calibrated on
    sess = ml_session.get_session(rep.path)
    assert sess.spec.value_range == 1.0
    frame = to_float(user_frames[3])
    q = ml_session.run_tiled(sess, frame)
    f = ml_session.run_tiled(ml_session.get_session(fp32), frame)
    assert 10 * np.log10(1 / np.mean((q - f) ** 2)) >= 25.0


def test_exception_int8_gate_refused(exported, user_frames, tmp_path: Path, private_tmp: Path) -> None:
    out = tmp_path / "c8.onnx"
    with pytest.raises(QualityGateError, match=r"c8\.onnx.*dB.*min_psnr 200") as info:
        quantize_int8(exported["compact"][1].path, out, user_frames, min_psnr=200)
    assert info.value.user_error is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert list(private_tmp.iterdir()) == []


def test_exception_int8_bad_input(exported, user_frames, tmp_path: Path) -> None:
    fp32 = exported["compact"][1].path
    with pytest.raises(ConfigError, match="no calibration frames"):
        quantize_int8(fp32, tmp_path / "q.onnx", [])
    with pytest.raises(ConfigError, match="overwrite"):
        quantize_int8(fp32, fp32, user_frames)
    with pytest.raises(ValueError, match=r"calibration frame 1.*float32"):
        quantize_int8(fp32, tmp_path / "q.onnx", [user_frames[0], to_float(user_frames[1])])
    with pytest.raises(ModelError, match="no such file"):
        quantize_int8(tmp_path / "none.onnx", tmp_path / "q.onnx", user_frames)
    assert list(tmp_path.iterdir()) == []


# ---- int8's speed gate ---------------------------------------------------------------------------


@pytest.mark.parametrize(("psnr_db", "speedup", "precision", "words"), [
    (39.5, 0.81, "fp32", ["refused for speed", "0.81x fp32 speed at 1280x720 (gate 1.1x)", "39.5 dB PSNR"]),
    (39.5, 1.099, "fp32", ["refused for speed", "1.10x"]),  # rounds to the gate's figure, still below it
    (39.5, 1.1, "int8", ["kept", "1.10x fp32 speed", "39.5 dB PSNR vs fp32 (gate 32 dB)"]),
    (40.0, 1.6, "int8", ["kept", "1.60x"]),
    (28.0, None, "fp32", ["refused for quality", "28.0 dB PSNR vs fp32 (gate 32 dB)", "speed not measured"]),
    (28.0, 3.0, "fp32", ["refused for quality"]),  # fast but wrong
    (None, None, "fp32", ["PSNR not measured"]),
])
def test_int8_decision(psnr_db, speedup, precision: str, words: list[str]) -> None:
    """The gate's decision from injected figures: int8 only when it passes the PSNR gate *and* is >= 1.1x."""
    d = decide_int8(psnr_db, speedup, min_psnr=32.0)
    assert d.precision == precision and (d.psnr_db, d.speedup) == (psnr_db, speedup)
    assert d.min_speedup == MIN_SPEEDUP == 1.1
    for w in words:
        assert w in d.reason, d.reason
    assert d.to_json()["reason"] == d.reason


def test_measure_speedup_alternates_and_takes_medians(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock that charges whichever model ran last: fp32 2 s, int8 1 s, the third round 10x slower
    (another process took the cores): the medians ignore it, and the order alternates round by round."""
    from core.ml import session as ml_session

    fp32 = exported["compact"][1].path
    spec = ml_session.get_session(fp32).spec
    runs: list[str] = []

    class Spy:
        def __init__(self, name: str) -> None:
            self.name, self.spec = name, spec

        def run(self, x: np.ndarray) -> None:
            runs.append(self.name)

    cost, now = {"fp32": 2.0, "int8": 1.0}, [0.0]

    def clock() -> float:  # only differences matter: each read after a run adds that run's cost
        if runs:
            now[0] += cost[runs[-1]] * (10 if len(runs) in (7, 8) else 1)
        return now[0]

    monkeypatch.setattr(ml_session, "get_session", lambda path: Spy("fp32" if path == fp32 else "int8"))
    ratio = measure_speedup(fp32, "int8.onnx", size=(8, 8), rounds=4, clock=clock)
    assert runs == ["fp32", "int8"] + ["fp32", "int8", "int8", "fp32"] * 2  # warm-ups, then alternating
    assert ratio == pytest.approx(2.0)


def test_measure_speedup_real_models(exported) -> None:
    fp32 = exported["compact"][1].path
    assert 0.2 < measure_speedup(fp32, fp32, size=(48, 64), rounds=3) < 5  # the same model: about 1x
    with pytest.raises(ConfigError, match="rounds"):
        measure_speedup(fp32, fp32, rounds=0)
