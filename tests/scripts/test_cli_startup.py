"""The render command starts its workers before anything else (the gap to FFmpeg on a short clip is start-up),
and only when the render runs on this machine's pool."""

from __future__ import annotations

import pytest

from scripts.cli import _renders_here


@pytest.mark.parametrize(("argv", "expected"), [
    (["render", "in.mp4", "-o", "out.mp4"], True),
    (["-v", "render", "in.mp4", "-o", "out.mp4", "--executor", "local"], True),
    (["render", "in.mp4", "-o", "out.mp4", "--executor=local"], True),
    (["render", "in.mp4", "-o", "out.mp4", "--executor", "dask://h:8786"], False),
    (["render", "in.mp4", "--executor=dask://h:8786", "-o", "out.mp4"], False),
    (["preview", "render.mp4", "-o", "x.png"], False),
    (["styles"], False),
    ([], False),
])
def test_renders_here(argv: list[str], expected: bool) -> None:
    assert _renders_here(argv) is expected
