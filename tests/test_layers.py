"""The import contract: one-way arrows between packages, no circle between modules, no torch in rendering.

Every ``import`` of ours is read from the source (top-level and inside functions alike: a lazy import is
still an arrow), so a new upward import or a circle fails here, not in a newcomer's head.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("core", "stylizers", "trainer", "app", "scripts")

#: package -> layer; a module may import its own package and any of a lower layer, nothing else
#: (two packages on one layer are independent of each other). The README's Layout section draws this.
LAYERS: dict[str, int] = {
    "core": 0,  # the base: errors, paths, config, atomic writes, presets, disk, database, hardware
    "core.video": 1,
    "core.color": 2, "core.ml": 2, "core.quality": 2,
    "stylizers": 3,
    "core.render": 4,
    "core.learn": 5, "trainer": 5,
    "core.studio": 6,
    "scripts": 7, "app": 7,
}
#: the shells: the CLI's ``studio`` launcher starts the app's server; pages may call a script's helper
SHELL_ARROWS = {("app", "scripts"), ("scripts", "app")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            found[module_name(path)] = path
    return found


def package_of(module: str) -> str:
    """The layered package holding ``module``: the longest prefix in :data:`LAYERS`."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise KeyError(module)


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import in ``path``, resolved to one of ours or any other name."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")[: None if is_pkg else -1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in known else base), node.lineno


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for mod, path in known.items():
        edges[mod] = set()
        for target, _ in imports(mod, path, known):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != mod:
                edges[mod].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    """The check above can fail: a made-up circle of three is found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_every_module_is_in_a_layer() -> None:
    assert [m for m in modules() if m.split(".")[0] in OURS and not _layered(m)] == []


def _layered(module: str) -> bool:
    try:
        package_of(module)
    except KeyError:
        return False
    return True


def test_arrows_point_down() -> None:
    """A package imports only itself and lower layers: video/color/ml never import render, learn or studio,
    and nothing in core imports app or scripts."""
    known = modules()
    wrong = []
    for mod, path in sorted(known.items()):
        src = package_of(mod)
        for target, line in imports(mod, path, known):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target not in known:
                continue
            dst = package_of(target)
            if dst == src or (src, dst) in SHELL_ARROWS:
                continue
            if LAYERS[dst] >= LAYERS[src]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {src} (layer {LAYERS[src]}) imports {target} "
                             f"(layer {LAYERS[dst]})")
    assert wrong == []


def test_the_base_imports_only_the_base() -> None:
    """``core.paths`` (where the studio's files are) imports nothing of ours, so anything may use it."""
    known = modules()
    ours = [t for t, _ in imports("core.paths", known["core.paths"], known) if t.split(".")[0] in OURS]
    assert ours == []


@pytest.mark.parametrize("top", ["core", "stylizers"])
def test_no_torch_outside_the_trainer(top: str) -> None:
    """Rendering never imports torch (it costs seconds and gigabytes); only trainer/ does."""
    known = modules()
    found = [f"{path.relative_to(ROOT)}:{line}" for mod, path in known.items() if mod.split(".")[0] == top
             for target, line in imports(mod, path, known) if target.split(".")[0] == "torch"]
    assert found == []


def test_a_render_loads_no_torch_and_no_app() -> None:
    """What a render process loads, measured: the CLI's render path and everything under it."""
    code = ("import sys, scripts.cli, core.render.pipeline, core.studio.worker; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'streamlit', 'app')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
