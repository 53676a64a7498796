"""The model registry: versions, the active pointer and rollback, checksums, atomic manifests, downloads, CLI.

Offline: downloads come from a ThreadingHTTPServer on 127.0.0.1 serving ``tmp_path``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, MediaNotFoundError, ModelError, OutputError
from core.ml import registry
from scripts.cli import main
from stylizers.fast_style import FastStyle, FastStyleParams, resolve_model


def dummy(path: Path, content: bytes = b"not really onnx") -> Path:
    path.write_bytes(content)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(home: Path) -> Path:
    return home / "models" / "manifest.json"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    """Base URL of an HTTP server on 127.0.0.1 serving ``tmp_path / 'www'``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_register_versions_and_rollback(tmp_path: Path, studio_home: Path) -> None:
    e1 = registry.register(dummy(tmp_path / "a.onnx", b"one"), "candy", style="candy", licence="MIT")
    e2 = registry.register(dummy(tmp_path / "b.onnx", b"two"), "candy", lineage={"base": "candy", "epochs": 2})
    assert (e1.version, e2.version) == (1, 2)
    assert e2.path == studio_home / "models" / "candy" / "v2.onnx"
    assert e2.sha256 == sha(b"two") and e2.path.read_bytes() == b"two"
    assert registry.info("candy").active == 2
    assert registry.resolve("candy").read_bytes() == b"two"
    assert registry.resolve("candy@1").read_bytes() == b"one"

    # history: activate pushes the current version, rollback pops it back
    registry.activate("candy", 1)
    assert registry.info("candy").active == 1
    assert registry.info("candy").history == (1, 2)
    assert registry.rollback("candy").version == 2
    assert registry.rollback("candy").version == 1
    with pytest.raises(ConfigError, match="nothing to roll back"):
        registry.rollback("candy")
    assert [e.spec for e in registry.list_models() if e.name == "candy"] == ["candy@1", "candy@2"]


def test_register_without_activate(tmp_path: Path) -> None:
    registry.register(dummy(tmp_path / "a.onnx", b"one"), "m")
    registry.register(dummy(tmp_path / "b.onnx", b"two"), "m", activate=False)
    assert registry.info("m").active == 1


def test_exception(tmp_path: Path, studio_home: Path) -> None:
    with pytest.raises(ConfigError, match="not registered"):
        registry.resolve("nope")
    registry.register(dummy(tmp_path / "a.onnx"), "m")
    with pytest.raises(ConfigError, match="no version 7"):
        registry.resolve("m@7")
    with pytest.raises(ConfigError, match="must be a number"):
        registry.resolve("m@x")
    with pytest.raises(ConfigError, match="bad model name"):
        registry.register(tmp_path / "a.onnx", "../evil")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        registry.register(tmp_path / "a.onnx", "m", colour="red")
    with pytest.raises(MediaNotFoundError):
        registry.register(tmp_path / "missing.onnx", "m")


def test_tampered_file(tmp_path: Path) -> None:
    e = registry.register(dummy(tmp_path / "a.onnx", b"good"), "m")
    e.path.write_bytes(b"evil")
    with pytest.raises(ModelError, match=re.escape(str(e.path))):
        registry.resolve("m")
    e.path.unlink()
    with pytest.raises(MediaNotFoundError, match="missing"):
        registry.resolve("m")


@pytest.mark.parametrize(("patch", "key"), [
    ({"extra": 1}, "extra"),
    ({"version": "2"}, "version"),
    ({"measured_fps": "fast"}, "measured_fps"),
    ({"lineage": {"epochs": 1.5}}, "lineage.epochs"),
    ({"sha256": "xyz"}, "sha256"),
    ({"temporal": {"luma": 0.8}}, "temporal key 'luma'"),
    ({"temporal": {"neural_luma": 1.5}}, r"temporal\.neural_luma must be in \[0, 0\.95\]"),
    ({"temporal": {"neural_luma": "0.8"}}, r"temporal\.neural_luma"),
    ({"temporal": {"neural_ssim": 1.0}}, r"temporal\.neural_ssim must be in \[0, 0\.999\]"),
])
def test_strict_manifest(tmp_path: Path, studio_home: Path, patch: dict, key: str) -> None:
    registry.register(dummy(tmp_path / "a.onnx"), "m")
    data = json.loads(manifest(studio_home).read_text())
    data["models"][0].update(patch)
    manifest(studio_home).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"manifest\.json.*{key}"):
        registry.list_models()


def test_crash_mid_manifest_write(tmp_path: Path, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register(dummy(tmp_path / "a.onnx", b"one"), "m")
    before = manifest(studio_home).read_bytes()
    real = os.replace
    failed: list[str] = []

    def flaky(src, dst, *a, **k):  # type: ignore[no-untyped-def]
        if str(dst).endswith("manifest.json") and not failed:
            failed.append(str(dst))
            raise OSError("disk full")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OutputError, match=r"manifest\.json"):
        registry.register(dummy(tmp_path / "b.onnx", b"two"), "m")
    assert failed
    assert manifest(studio_home).read_bytes() == before
    assert [e.spec for e in registry.list_models() if e.name == "m"] == ["m@1"]
    assert sorted(p.name for p in (studio_home / "models" / "m").iterdir()) == ["v1.onnx"]
    assert not [p for p in (studio_home / "models").iterdir() if p.name.endswith(".tmp")]
    # and the next try works, with the same version number
    assert registry.register(tmp_path / "b.onnx", "m").version == 2


def test_download_http(tmp_path: Path, server: str) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    dummy(tmp_path / "www" / "net.onnx", data)
    seen: list[tuple[int, int | None]] = []
    e = registry.download(f"{server}/net.onnx", sha(data).upper(), "net",
                        on_progress=lambda d, t: seen.append((d, t)))
    assert e.spec == "net@1" and registry.resolve("net").read_bytes() == data
    assert seen[-1] == (len(data), len(data)) and len(seen) > 1


def test_download_wrong_checksum_leaves_nothing(tmp_path: Path, studio_home: Path, server: str) -> None:
    dummy(tmp_path / "www" / "net.onnx", b"payload")
    registry.register(dummy(tmp_path / "a.onnx"), "keep")
    before = manifest(studio_home).read_bytes()
    files_before = sorted(str(p) for p in (studio_home / "models").rglob("*"))
    with pytest.raises(registry.ChecksumError, match=f"checksum mismatch: expected {'0' * 64}, got {sha(b'payload')}"):
        registry.download(f"{server}/net.onnx", "0" * 64, "net")
    with pytest.raises(ModelError, match="failed"):
        registry.download(f"{server}/missing.onnx", "0" * 64, "net")
    assert manifest(studio_home).read_bytes() == before
    assert sorted(str(p) for p in (studio_home / "models").rglob("*")) == files_before


def test_download_local_path(tmp_path: Path) -> None:
    src = dummy(tmp_path / "local.onnx", b"local")
    assert registry.download(str(src), sha(b"local"), "loc").version == 1
    with pytest.raises(ConfigError, match="64 hex"):
        registry.download(str(src), "abc", "loc")


def test_bundled_manifest_read_only(tmp_path: Path, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo_models"
    repo.mkdir()
    dummy(repo / "b.onnx", b"bundled")
    (repo / "manifest.json").write_text(json.dumps({"format": 1, "models": [
        {"name": "b", "version": 1, "file": "b.onnx", "sha256": sha(b"bundled"), "created": "2024-01-01T00:00:00"}]}))
    monkeypatch.setattr(registry, "bundled_manifest", lambda: repo / "manifest.json")
    assert registry.resolve("b").read_bytes() == b"bundled"
    assert registry.register(dummy(tmp_path / "x.onnx", b"mine"), "b").version == 2
    registry.rollback("b")
    assert registry.resolve("b").read_bytes() == b"bundled"
    assert json.loads((repo / "manifest.json").read_text())["models"][0]["version"] == 1


def test_fast_style_resolves_registered(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from tests.ml.test_session import invert, save_model

    src = save_model(tmp_path / "inv.onnx", invert(255.0))
    e = registry.register(src, "inv")
    assert resolve_model("inv") == e.path.resolve() == resolve_model("inv@1")
    assert FastStyle.files(FastStyleParams(model="inv")) == [str(e.path.resolve())]
    rgb = np.full((8, 8, 3), 200, np.uint8)
    assert abs(int(FastStyle(FastStyleParams(model="inv"))(rgb, 0)[0, 0, 0]) - 55) <= 1
    assert resolve_model(str(src)) == src.resolve()  # paths still work
    e.path.write_bytes(b"tampered")
    with pytest.raises(ModelError):
        resolve_model("inv")


def test_cli(tmp_path: Path, server: str, capsys: pytest.CaptureFixture[str]) -> None:
    dummy(tmp_path / "www" / "c.onnx", b"c1")
    assert main(["download-model", f"{server}/c.onnx", "--sha256", sha(b"c1"), "--name", "c", "-q"]) == 0
    assert "registered c@1" in capsys.readouterr().out
    src = dummy(tmp_path / "c2.onnx", b"c2")
    assert main(["download-model", str(src), "--sha256", sha(b"c2"), "--name", "c"]) == 0
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "  c@1" in out and "* c@2" in out
    assert main(["models", "activate", "c@1"]) == 0
    assert main(["models", "rollback", "c"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "active: c@2"
    assert main(["models", "info", "c"]) == 0
    assert json.loads(capsys.readouterr().out)["active"] == 2

    for argv in (["models", "info", "nope"], ["models", "activate", "c"], ["models", "activate", "c@9"],
                 ["download-model", str(src), "--sha256", "0" * 64, "--name", "c"],
                 ["download-model", str(tmp_path / "none.onnx"), "--sha256", "0" * 64, "--name", "c"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_register_carries_the_range_sidecar(tmp_path: Path) -> None:
    """A model's ``<model>.json`` (its value range) is registered with it and found beside the copy."""
    from core.ml import registry
    from core.ml.session import sidecar_range

    src = tmp_path / "unit.onnx"
    src.write_bytes(b"not a real model, the registry does not parse it")
    src.with_suffix(".json").write_text('{"range": 1}')
    entry = registry.register(src, "unitrange")
    assert entry.path.with_suffix(".json").is_file()
    assert sidecar_range(entry.path) == 1.0


def test_register_writes_the_card(tmp_path: Path, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card is written beside the model once its version is known, and goes with it if the manifest
    cannot be written; bundled models keep theirs beside each version (<name>-v<N>.md)."""
    e = registry.register(dummy(tmp_path / "a.onnx", b"one"), "m", card=lambda entry: f"# {entry.spec}: mine\n")
    assert e.card_path == studio_home / "models" / "m" / "v1.md" and e.card_path.read_text() == "# m@1: mine\n"
    assert registry.register(tmp_path / "a.onnx", "m").card_path is None  # no card given: none
    monkeypatch.setattr(registry, "_save", lambda m: (_ for _ in ()).throw(OutputError("disk full")))
    with pytest.raises(OutputError):
        registry.register(tmp_path / "a.onnx", "m", card=lambda entry: "x")
    assert not (studio_home / "models" / "m" / "v3.md").exists()
    for version in (1, 2):
        sketch = registry.entry(f"sketch@{version}")
        assert sketch.card_path is not None and sketch.card_path.name == f"sketch-v{version}.md"
