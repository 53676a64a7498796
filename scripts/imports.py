"""The import graph of our packages: their layers, the arrows between them, and any circle.

``tests/test_layers.py`` holds the contract with these functions (a lower package never imports a higher one,
no two modules import each other round a circle); ``python -m scripts.imports --readme README.md`` redraws
the README's Layout picture from the code itself, so the picture cannot drift from what the imports say.
Every ``import`` is read from the source, top-level and inside functions alike: a lazy import is an arrow too.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("core", "stylizers", "trainer", "app", "scripts")

#: package -> layer; a module may import its own package and any of a lower layer, nothing else (two
#: packages on one layer are independent of each other)
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
#: arrows allowed within the top layer: the ``studio`` launcher starts the app's server, pages share a helper
SHELL_ARROWS = frozenset({("app", "scripts"), ("scripts", "app")})
#: what each package is for, as the picture labels it
ROLES = {
    "core": "base: errors, paths, config, presets, atomic, disk, db, hardware",
    "core.video": "probe, reader, writer, frames, cuts, flow, stitch",
    "core.color": "LUTs, OpenColorIO, 8-bit tables",
    "core.ml": "ONNX sessions, model registry",
    "core.quality": "metrics, shot analysis",
    "stylizers": "one file per style + registry",
    "core.render": "spec, plan, chunk, stages, temporal, publish",
    "core.learn": "sampling, feedback, preference, autotune",
    "trainer": "fine-tuning, ONNX export (torch)",
    "core.studio": "queue, worker, watch, storage, telemetry",
    "scripts": "CLI, studio launcher, demo, benchmark",
    "app": "Streamlit pages",
}
README_START = "<!-- layers:start (python -m scripts.imports --readme README.md) -->"
README_END = "<!-- layers:end -->"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of ours by dotted name."""
    return {module_name(p): p for top in OURS for p in (ROOT / top).rglob("*.py")}


def package_of(module: str) -> str:
    """The layered package holding ``module``: the longest prefix in :data:`LAYERS`; KeyError if none."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise KeyError(module)


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import in ``path``: one of ours resolved to the module it names
    (``from core import atomic`` is ``core.atomic``), any other as written."""
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


def ours(target: str, known: dict[str, Path]) -> str | None:
    """The module of ours ``target`` names (a name inside a module counts as the module), else None."""
    while target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target if target in known else None


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for mod, path in known.items():
        edges[mod] = {t for imp, _ in imports(mod, path, known) if (t := ours(imp, known)) and t != mod}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                on.discard(w)
                comp.append(w)
            on.discard(v)
            comp.append(v)
            if len(comp) > 1:
                found.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def upward() -> list[str]:
    """Every import that breaks the layers, as ``file:line: what imports what``."""
    known = modules()
    wrong = []
    for mod, path in sorted(known.items()):
        src = package_of(mod)
        for imp, line in imports(mod, path, known):
            target = ours(imp, known)
            if target is None:
                continue
            dst = package_of(target)
            if dst != src and (src, dst) not in SHELL_ARROWS and LAYERS[dst] >= LAYERS[src]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {src} (layer {LAYERS[src]}) imports {target} "
                             f"(layer {LAYERS[dst]})")
    return wrong


def package_arrows() -> dict[tuple[str, str], int]:
    """(importing package, imported package) -> how many modules of the first import the second."""
    arrows: dict[tuple[str, str], int] = {}
    for mod, targets in graph().items():
        src = package_of(mod)
        for dst in {package_of(t) for t in targets} - {src}:
            arrows[(src, dst)] = arrows.get((src, dst), 0) + 1
    return arrows


def reduced(arrows: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The arrows no longer path implies (a -> b -> c makes a -> c go without saying): the picture's arrows."""
    succ: dict[str, set[str]] = {}
    for src, dst in arrows:
        succ.setdefault(src, set()).add(dst)

    def reaches(a: str, b: str, skip: tuple[str, str]) -> bool:
        """Whether ``b`` is reachable from ``a`` without the arrow ``skip``."""
        seen, todo = {a}, [a]
        while todo:
            here = todo.pop()
            for nxt in succ.get(here, ()):
                if (here, nxt) == skip or nxt in seen:
                    continue
                if nxt == b:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    return {k: n for k, n in arrows.items() if not reaches(k[0], k[1], k)}


def mermaid() -> str:
    """The packages, one row per layer (highest on top), and an arrow for each package another imports that
    no longer path implies, with the count of importing modules: a Mermaid flowchart, which GitHub draws."""
    def node(pkg: str) -> str:
        return pkg.replace(".", "_")

    lines = ["```mermaid", "flowchart TB"]
    for layer in sorted(set(LAYERS.values()), reverse=True):
        lines.append(f'  subgraph L{layer}["layer {layer}"]')
        lines.append("    direction LR")
        for pkg in sorted(p for p, n in LAYERS.items() if n == layer):
            name = f"{pkg}/" if pkg == "core" else pkg.replace(".", "/")
            lines.append(f'    {node(pkg)}["<b>{name}</b><br/>{ROLES[pkg]}"]')
        lines.append("  end")
    for (src, dst), n in sorted(reduced(package_arrows()).items(), key=lambda kv: (-LAYERS[kv[0][0]], kv[0])):
        lines.append(f"  {node(src)} -->|{n}| {node(dst)}")
    lines.append("```")
    return "\n".join(lines)


def update_readme(readme: Path) -> bool:
    """Redraw the picture between the README's layers markers; True when the file changed."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{readme}: no {README_START!r} ... {README_END!r} markers to draw between")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    new = f"{head}{README_START}\n{mermaid()}\n{README_END}{tail}"
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.imports", description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="redraw this README's Layout picture (else print it)")
    args = parser.parse_args(argv)
    problems = [f"import circle: {' <-> '.join(c)}" for c in cycles(graph())] + upward()
    for line in problems:
        print(line, file=sys.stderr)
    if args.readme:
        print(f"{args.readme}: {'redrawn' if update_readme(args.readme) else 'picture already current'}")
    else:
        print(mermaid())
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
