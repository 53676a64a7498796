"""The model registry: versions, the review lifecycle (candidate, activate, discard), the active pointer and
rollback, checksums, atomic manifests, downloads, CLI.

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


def test_candidate_leaves_the_active_version(tmp_path: Path, studio_home: Path) -> None:
    """A candidate is registered beside the active version, never instead of it: a bare name keeps resolving
    to the active one until an explicit activate, which releases the candidate for good."""
    registry.register(dummy(tmp_path / "a.onnx", b"one"), "m")
    c = registry.register_candidate(dummy(tmp_path / "b.onnx", b"two"), "m", review={"format": 1, "fps": 2.5})
    assert (c.spec, c.state) == ("m@2", "candidate")
    i = registry.info("m")
    assert (i.active, i.history, i.state(1), i.state(2)) == (1, (), "active", "candidate")
    assert [e.spec for e in i.candidates] == ["m@2"]
    assert registry.resolve("m").read_bytes() == b"one" and registry.resolve("m@2").read_bytes() == b"two"
    assert [e.spec for e in registry.list_models() if e.name == "m"] == ["m@1"]  # what a render may pick by name
    assert [e.spec for e in registry.list_models(candidates=True) if e.name == "m"] == ["m@1", "m@2"]
    assert c.review_path == studio_home / "models" / "m" / "v2.review.json"
    assert json.loads(c.review_path.read_text()) == {"format": 1, "fps": 2.5}
    assert json.loads(manifest(studio_home).read_text())["active"]["m"] == {"version": 1, "history": []}
    with pytest.raises(ConfigError, match="'state' is set by the registry"):
        registry.register(tmp_path / "b.onnx", "m", state="candidate")

    assert registry.activate("m", 2).state is None
    i = registry.info("m")
    assert (i.active, i.history, i.state(1), i.state(2), i.candidates) == (2, (1,), "released", "active", ())
    assert "state" not in json.loads(manifest(studio_home).read_text())["models"][1]
    assert registry.rollback("m").version == 1 and registry.resolve("m").read_bytes() == b"one"


def test_rollback_returns_to_the_previous_active_version(tmp_path: Path) -> None:
    """Issue 22: roll back follows the activation history (not the version number before), and training
    (a candidate) is not an activation: rolling back never brings up a version nobody reviewed."""
    registry.register(dummy(tmp_path / "a.onnx", b"one"), "m")                      # m@1 active
    registry.register_candidate(dummy(tmp_path / "b.onnx", b"two"), "m")            # m@2 candidate
    registry.register_candidate(dummy(tmp_path / "c.onnx", b"three"), "m")          # m@3 candidate
    registry.activate("m", 3)                                                       # reviewed: m@3 live
    registry.register_candidate(dummy(tmp_path / "d.onnx", b"four"), "m")           # m@4 candidate
    assert registry.info("m").active == 3
    assert registry.rollback("m").version == 1  # the previously active one, not m@2 (never reviewed)
    assert registry.info("m").state(2) == registry.info("m").state(4) == "candidate"
    with pytest.raises(ConfigError, match=r"nothing to roll back to \(v1 is the first active version\)"):
        registry.rollback("m")


def test_new_name_candidate_has_no_active_version(tmp_path: Path) -> None:
    """A fine-tune under a new name stays a candidate: ``model=NAME`` is one line saying which candidate waits
    and how to activate it (never silently the unreviewed model); ``NAME@1`` renders it on purpose."""
    pytest.importorskip("onnx")
    from tests.ml.test_session import invert, save_model

    src = save_model(tmp_path / "inv.onnx", invert(255.0))
    registry.register_candidate(src, "fresh")
    assert registry.is_registered("fresh") and registry.info("fresh").active is None
    assert "fresh" not in {e.name for e in registry.list_models()}
    want = r"model 'fresh' has no active version: fresh@1 is a candidate awaiting review; .*models activate fresh@1"
    for call in (lambda: registry.entry("fresh"), lambda: resolve_model("fresh"),
                 lambda: FastStyle.pin(FastStyleParams(model="fresh"))):
        with pytest.raises(ConfigError, match=want) as err:
            call()
        assert "\n" not in str(err.value)
    assert resolve_model("fresh@1") == registry.entry("fresh@1").path.resolve()
    with pytest.raises(ConfigError, match="nothing to roll back to \\(none was ever active\\)"):
        registry.rollback("fresh")
    assert registry.activate("fresh", 1).spec == "fresh@1"
    assert FastStyle.pin(FastStyleParams(model="fresh")).model == "fresh@1"


def test_discard_marks_rejected_and_keeps_files(tmp_path: Path, studio_home: Path) -> None:
    registry.register(dummy(tmp_path / "a.onnx", b"one"), "m")
    c = registry.register_candidate(dummy(tmp_path / "b.onnx", b"two"), "m", card=lambda e: f"# {e.spec}\n")
    files = sorted(p.name for p in (studio_home / "models" / "m").iterdir())
    assert registry.discard("m", 2).state == "rejected"
    assert sorted(p.name for p in (studio_home / "models" / "m").iterdir()) == files  # nothing deleted
    i = registry.info("m")
    assert (i.active, i.state(2), i.candidates) == (1, "rejected", ())
    assert registry.resolve("m@2") == c.path.resolve()
    for version, why in ((2, "m@2 is rejected"), (1, "m@1 is active")):
        with pytest.raises(ConfigError, match=f"{why}, not a candidate"):
            registry.discard("m", version)
    registry.register_candidate(dummy(tmp_path / "c.onnx", b"three"), "solo")
    registry.discard("solo", 1)
    with pytest.raises(ConfigError, match=r"model 'solo' has no active version: solo@1 is rejected on review"):
        registry.entry("solo")
    assert registry.activate("m", 2).spec == "m@2"  # on second thoughts: activating is a review decision too
    assert registry.info("m").state(2) == "active"


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
    ({"state": "approved"}, r"state must be 'candidate' or 'rejected'"),
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

    # a candidate: listed with its state, activated by name@version only, discarded without deleting
    registry.register_candidate(dummy(tmp_path / "c3.onnx", b"c3"), "c")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "* c@2  active " in out and "  c@3  candidate " in out and "  c@1  released " in out
    assert out.splitlines()[-1].startswith("1 candidate awaiting review (c@3): renders by name keep the active")
    assert main(["models", "activate", "c@3"]) == 0
    assert capsys.readouterr().out.strip() == "active: c@3 (was c@2; `models rollback c` returns to it)"
    assert main(["models", "rollback", "c"]) == 0
    registry.register_candidate(dummy(tmp_path / "c4.onnx", b"c4"), "c")
    assert main(["models", "discard", "c@4"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("rejected: c@4 (its files stay in ")
    assert main(["models", "info", "c"]) == 0
    states = {v["version"]: v["state"] for v in json.loads(capsys.readouterr().out)["versions"]}
    assert states == {1: "released", 2: "active", 3: "released", 4: "rejected"}

    for argv in (["models", "info", "nope"], ["models", "activate", "c"], ["models", "activate", "c@9"],
                 ["models", "discard", "c@2"], ["models", "discard", "c"],
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
