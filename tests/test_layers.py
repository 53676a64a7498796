"""The import contract: one-way arrows between packages, no circle between modules, no torch in rendering.

:mod:`scripts.imports` reads every import from the source (top-level and inside functions alike: a lazy
import is still an arrow), so a new upward import or a circle fails here, not in a newcomer's head.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts import imports

ROOT = imports.ROOT


def test_no_import_circle() -> None:
    assert imports.cycles(imports.graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    """The check above can fail: a made-up circle of three is found, a chain is not."""
    assert imports.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert imports.cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_every_module_is_in_a_layer() -> None:
    unlayered = []
    for mod in imports.modules():
        try:
            imports.package_of(mod)
        except KeyError:
            unlayered.append(mod)
    assert unlayered == []


def test_arrows_point_down() -> None:
    """A package imports only itself and lower layers: video/color/ml never import render, learn or studio,
    and nothing in core imports app or scripts."""
    assert imports.upward() == []


def test_the_base_imports_only_the_base() -> None:
    """``core.paths`` (where the studio's files are) imports nothing of ours, so anything may use it."""
    known = imports.modules()
    ours = [t for t, _ in imports.imports("core.paths", known["core.paths"], known) if imports.ours(t, known)]
    assert ours == []


@pytest.mark.parametrize("top", ["core", "stylizers"])
def test_no_torch_outside_the_trainer(top: str) -> None:
    """Rendering never imports torch (it costs seconds and gigabytes); only trainer/ does."""
    known = imports.modules()
    found = [f"{path.relative_to(ROOT)}:{line}" for mod, path in known.items() if mod.split(".")[0] == top
             for target, line in imports.imports(mod, path, known) if target.split(".")[0] == "torch"]
    assert found == []


def test_a_render_loads_no_torch_and_no_app() -> None:
    """What a render process loads, measured: the CLI's render path and everything under it."""
    code = ("import sys, scripts.cli, core.render.pipeline, core.studio.worker; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'streamlit', 'app')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_draws_the_packages_as_they_are(tmp_path: Path) -> None:
    """The Layout picture is generated from the imports; an edit that adds an arrow must redraw it."""
    readme = ROOT / "README.md"
    copy = tmp_path / "README.md"
    copy.write_text(readme.read_text())
    assert not imports.update_readme(copy), \
        "README's Layout picture is stale: run python -m scripts.imports --readme README.md"
