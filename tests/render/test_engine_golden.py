"""Pixels change only with the engine version: every style's render of one synthetic clip (a cut, motion, two
chunks) decodes to the frames recorded in ``engine_golden.json`` for the current :data:`ENGINE_VERSION`.

A speed-up that keeps the version must give the same bytes; one that changes pixels bumps the version (so no
checkpoint of the old engine is reused) and records the new frames:
``python -m tests.render.test_engine_golden``. Each record names the libraries and the CPU's vector extensions
it was made with, and a machine compares with the record of its own kind; elsewhere (other OpenCV kernels,
another x264, another C maths library) the comparison is skipped, with the reason. Four AVX-512 flags were not
enough to tell machines apart: a CPU with more of them (AVX512-FP16 and -BF16, AVX-VNNI) rendered the cinematic
look with other bytes, the same on every run there, while the other styles matched.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("engine_golden.json")
STYLES = ("none", "pencil", "cartoon", "comic", "cinematic")


def platform() -> dict[str, str]:
    """What the frames depend on besides our code: the pinned libraries, the C library (its maths functions) and
    the CPU's vector extensions, which choose the kernels OpenCV, OpenColorIO, NumPy and x264 run."""
    import platform as host

    import av
    import cv2
    import numpy as np

    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    simd = sorted({f for f in flags if f.startswith(("sse", "ssse", "avx", "fma", "f16c", "amx"))})
    return {"av": av.__version__, "opencv": cv2.__version__, "numpy": np.__version__, "libc": " ".join(host.libc_ver()),
            "simd": "+".join(simd)}


def digests(tmp: Path) -> dict[str, str]:
    """sha256 of each style's decoded output frames (planes as the file holds them; not the container bytes,
    whose header names the muxer's version)."""
    import av

    from core.render.pipeline import render
    from core.render.spec import build_job
    from core.video.synthetic import ClipSpec, make_clip

    # FFV1 (lossless, intra): the same input bytes on every run, which x264 with its threads does not promise
    clip = make_clip(tmp / "golden.mkv", ClipSpec(width=192, height=108, frames=30, cut_at=17, codec="ffv1"))
    out = {}
    for style in STYLES:
        result = render(build_job(clip, tmp / f"{style}.mp4", style, "balanced", chunk_seconds=0.5), workers=2)
        h = hashlib.sha256()
        with av.open(result.output) as c:
            for frame in c.decode(video=0):
                for plane in frame.planes:
                    h.update(bytes(plane))
        out[style] = h.hexdigest()
    return out


def test_pixels_change_only_with_the_engine_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.render.spec import ENGINE_VERSION

    monkeypatch.setenv("VP_HOME", str(tmp_path / "home"))
    golden = json.loads(GOLDEN.read_text())
    assert golden["engine"] == ENGINE_VERSION, (
        f"ENGINE_VERSION is {ENGINE_VERSION} but {GOLDEN.name} holds version {golden['engine']}'s frames: record "
        "this version's with `python -m tests.render.test_engine_golden`")
    here = platform()
    record = next((r for r in golden["records"] if r["platform"] == here), None)
    if record is None:
        pytest.skip(f"{GOLDEN.name} holds no frames recorded on a machine like this one ({here}); recorded on: "
                    f"{[r['platform'] for r in golden['records']]}")
    got = digests(tmp_path)
    changed = [s for s in STYLES if got[s] != record["digests"].get(s)]
    assert not changed, (f"{', '.join(changed)}: rendered pixels changed but ENGINE_VERSION is still "
                         f"{ENGINE_VERSION}: bump it (core/render/spec.py) and record the new frames")


def _record() -> None:
    """Record this machine's frames for the current engine version, beside other machines' records of it (a
    new version drops the old version's records)."""
    import os
    import tempfile

    from core.render.spec import ENGINE_VERSION

    here = platform()
    old = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    kept = [r for r in old.get("records", []) if old.get("engine") == ENGINE_VERSION and r["platform"] != here]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VP_HOME"] = str(Path(tmp) / "home")
        kept.append({"platform": here, "digests": digests(Path(tmp))})
    GOLDEN.write_text(json.dumps({"engine": ENGINE_VERSION, "records": kept}, indent=1, sort_keys=True) + "\n")
    print(f"recorded engine {ENGINE_VERSION}'s frames for {here} in {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    _record()
