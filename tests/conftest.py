"""Fixtures: seeded synthetic clips made with PyAV, a private studio home, the real clips in ../shared."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from core.video.probe import probe
from core.video.reader import Reader
from core.video.synthetic import ClipSpec, make_clip

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
MEDIA = SHARED / "media"


@pytest.fixture(autouse=True)
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own work/log/preset folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("VP_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def keep_main_module() -> Iterator[None]:
    """Streamlit's AppTest runs page scripts as ``__main__`` and leaves one in ``sys.modules``; a later
    spawn/forkserver child would then re-run that page as its main module. Put the real one back."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small clips covering the engine's paths, generated once per session."""
    root = tmp_path_factory.mktemp("clips")
    specs = {
        "cfr": ClipSpec(frames=48, audio=False),
        "cfr_audio": ClipSpec(frames=48, audio=True),
        "vfr_audio": ClipSpec(frames=48, vfr=True, audio=True),
        "cut": ClipSpec(frames=60, cut_at=31, gop=15),
        "long": ClipSpec(frames=100, fps=Fraction(25), gop=25, audio=True, seed=3),
        "rotated": ClipSpec(frames=12, width=160, height=96, rotation=90),
        "odd": ClipSpec(frames=12, width=161, height=97, pix_fmt="yuv444p"),
        "p10": ClipSpec(frames=12, pix_fmt="yuv420p10le"),
        "p444": ClipSpec(frames=12, pix_fmt="yuv444p"),
        "bars709": ClipSpec(frames=8, width=640, height=360, bars=True, matrix=1),
        "bars601": ClipSpec(frames=8, width=640, height=360, bars=True, matrix=6),
        "bars709_full": ClipSpec(frames=8, width=640, height=360, bars=True, matrix=1, full_range=True),
    }
    return {name: make_clip(root / f"{name}.mp4", spec) for name, spec in specs.items()}


def need_shared() -> None:
    if not MEDIA.is_dir():
        pytest.skip(f"real clips not found at {MEDIA} (../shared is only beside a developer's checkout)")


def decode_all(path: str | Path) -> list[np.ndarray]:
    info = probe(path)
    with Reader(info) as r:
        return [f.rgb for f in r.frames()]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def kill_after_chunks(cmd: list[str], env: dict[str, str], cwd: Path, chunks: int = 2) -> dict:
    """Start the render ``cmd``, SIGKILL its whole process group once its checkpoint lists ``chunks`` finished
    chunks, and return the checkpoint's ``done`` records read just before (a crash mid-render, for the resume
    tests). Fails the test when the render ends before it could be killed."""
    import json
    import os
    import signal
    import subprocess
    import time

    from core.render.workdir import work_root

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    done: dict = {}
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        for ck in work_root().glob("*/checkpoint.json"):
            try:
                done = json.loads(ck.read_text())["done"]
            except (OSError, ValueError):
                continue
        if len(done) >= chunks:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the render finished before it could be killed"
    return done
