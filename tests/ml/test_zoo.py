"""Known models by name (core.ml.zoo, core.ml.fetch, ``download-model NAME``): progress, checksums pinned or
recorded at the first download, resumed downloads, nothing registered on failure, the offline message.

Offline: the catalogue is pointed at an HTTP server on 127.0.0.1 (a thread) serving a small ONNX model made
here, with or without Range support, and able to drop the connection mid-file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, DownloadError
from core.ml import fetch, registry, zoo
from core.ml.registry import ChecksumError
from scripts.cli import main

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def tiny_model() -> bytes:
    """An NCHW float32 model ``y = 255 - x`` carrying 400 KB of unused weights, so a transfer takes many blocks."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    weights = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    inits = [helper.make_tensor("c", TensorProto.FLOAT, [], [255.0]),
             helper.make_tensor("ballast", TensorProto.FLOAT, [weights.size], weights.tolist())]
    graph = helper.make_graph([helper.make_node("Sub", ["c", "x"], ["y"])], "tiny", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


DATA = tiny_model()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """``/model.onnx`` from ``payload``; ``ranges`` honours ``Range: bytes=N-`` with 206; ``drop_after`` cuts
    the next ``drops`` answers off after that many body bytes. ``seen`` holds each request's Range header."""

    def __init__(self, payload: bytes, ranges: bool = True) -> None:
        self.payload, self.ranges = payload, ranges
        self.drop_after, self.drops = 0, 0
        self.seen: list[str | None] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/model.onnx":
                    self.send_error(404)
                    return
                asked = self.headers.get("Range")
                server.seen.append(asked)
                body, start = server.payload, 0
                if asked and server.ranges:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
                self.end_headers()
                if server.drops:
                    server.drops -= 1
                    self.wfile.write(body[start:start + server.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

        return Handler


def serve(server: Server) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), server.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/model.onnx"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def point(monkeypatch: pytest.MonkeyPatch, url: str, sha256: str | None = "pinned") -> zoo.ZooModel:
    """Point the catalogue's ``mosaic`` at ``url``; ``sha256`` "pinned" pins DATA's hash, None pins nothing."""
    pin = sha(DATA) if sha256 == "pinned" else sha256
    model = dataclasses.replace(zoo.CATALOGUE["mosaic"], urls=(url,), sha256=pin, size=len(DATA))
    monkeypatch.setitem(zoo.CATALOGUE, "mosaic", model)
    return model


@pytest.fixture()
def ranged() -> Iterator[Server]:
    s = Server(DATA, ranges=True)
    s.url = next(gen := serve(s))  # type: ignore[attr-defined]
    yield s
    next(gen, None)


@pytest.fixture()
def plain() -> Iterator[Server]:
    s = Server(DATA, ranges=False)
    s.url = next(gen := serve(s))  # type: ignore[attr-defined]
    yield s
    next(gen, None)


def mosaics() -> list[str]:
    """The registered versions of ``mosaic`` (the repo's bundled models are registered too)."""
    return [e.spec for e in registry.list_models() if e.name == "mosaic"]


def leftovers(home: Path) -> list[str]:
    partial = home / "models" / ".partial"
    return sorted(p.name for p in partial.rglob("*")) if partial.exists() else []


def test_catalogue() -> None:
    names = set(zoo.CATALOGUE)
    for look in ("mosaic", "candy", "rain-princess", "udnie", "pointilism"):
        assert {look, f"{look}-8"} <= names
    for m in zoo.CATALOGUE.values():
        assert m.urls[0].startswith("https://github.com/onnx/models/raw/main/validated/vision/style_transfer/")
        assert m.sha256 is None or (len(m.sha256) == 64 and m.sha256_source.startswith("onnx/models LFS"))
        assert (m.channels, m.value_range, m.licence) == ("rgb", 255, "BSD-3-Clause")
    assert zoo.CATALOGUE["udnie"].sha256 == "8656b6ce7dec8f22ee13c2d557d6b67bd6f550dde88d0f2e7c9972aeb765cc0d"
    with pytest.raises(ConfigError, match=r"no known model 'vangogh' .*known: candy"):
        zoo.get("vangogh")


def test_smoke(ranged: Server, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.ml.session import get_session, sidecar_range

    point(monkeypatch, ranged.url)  # type: ignore[attr-defined]
    seen: list[tuple[int, int | None]] = []
    done = fetch.download_known("mosaic", on_progress=lambda d, t: seen.append((d, t)))
    assert len(seen) > 3 and seen[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    e = done.entry
    assert (e.spec, done.check, done.sha256, done.resumed_from) == ("mosaic@1", "pinned", sha(DATA), 0)
    assert (e.style, e.licence, e.input) == ("zoo:mosaic", "BSD-3-Clause",
                                             {"layout": "NCHW", "channels": "rgb", "range": 255, "size": [224, 224]})
    assert registry.resolve("mosaic").read_bytes() == DATA
    assert json.loads(e.path.with_suffix(".json").read_text()) == {"range": 255, "channels": "rgb"}
    assert sidecar_range(e.path) == 255.0
    out = get_session(e.path).run(np.full((1, 3, 8, 8), 200, np.float32))
    assert np.allclose(out, 55)
    assert leftovers(studio_home) == []


def test_exception_checksum_mismatch(ranged: Server, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong pin: one line naming expected and got; the partial file is removed and nothing registered."""
    point(monkeypatch, ranged.url, sha256="0" * 64)  # type: ignore[attr-defined]
    with pytest.raises(ChecksumError, match=f"checksum mismatch: expected {'0' * 64}, got {sha(DATA)}$"):
        fetch.download_known("mosaic")
    assert mosaics() == [] and leftovers(studio_home) == []
    assert not fetch.partial_path("mosaic").exists()


def test_resumed_with_range(ranged: Server, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server drops the connection mid-file: the next try asks for the rest and the file is whole."""
    point(monkeypatch, ranged.url)  # type: ignore[attr-defined]
    half = len(DATA) // 2
    ranged.drop_after, ranged.drops = half, 1
    seen: list[int] = []
    done = fetch.download_known("mosaic", on_progress=lambda d, t: seen.append(d))
    assert ranged.seen == [None, f"bytes={half}-"]
    assert done.resumed_from == half and seen[-1] == len(DATA)
    assert registry.resolve("mosaic").read_bytes() == DATA and done.check == "pinned"


def test_resumed_by_a_later_run(ranged: Server, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut off on every try: nothing registered, the partial kept; running again resumes from it."""
    point(monkeypatch, ranged.url)  # type: ignore[attr-defined]
    third = len(DATA) // 3
    ranged.drop_after, ranged.drops = third, 2
    with pytest.raises(DownloadError, match=f"cut off after {2 * third} of {len(DATA)} bytes.*run the same command"):
        fetch.download_known("mosaic", attempts=2)
    assert mosaics() == []
    assert fetch.partial_path("mosaic").stat().st_size == 2 * third
    done = fetch.download_known("mosaic")
    assert ranged.seen == [None, f"bytes={third}-", f"bytes={2 * third}-"]
    assert done.resumed_from == 2 * third and registry.resolve("mosaic").read_bytes() == DATA


def test_restarted_without_range(plain: Server, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that ignores Range answers 200 with the whole file: the partial one is replaced, not appended to."""
    point(monkeypatch, plain.url)  # type: ignore[attr-defined]
    plain.drop_after, plain.drops = len(DATA) // 2, 1
    done = fetch.download_known("mosaic")
    assert plain.seen == [None, f"bytes={len(DATA) // 2}-"]
    assert done.resumed_from == 0 and registry.resolve("mosaic").read_bytes() == DATA
    assert leftovers(studio_home) == []


def test_first_download_recorded(ranged: Server, studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No published hash: the first download's is recorded in its entry and holds every later download to it."""
    point(monkeypatch, ranged.url, sha256=None)  # type: ignore[attr-defined]
    first = fetch.download_known("mosaic")
    assert (first.check, first.entry.sha256) == ("first", sha(DATA))
    ranged.payload = DATA[:-4] + b"evil"
    with pytest.raises(ChecksumError, match=f"expected {sha(DATA)}, got {sha(ranged.payload)}"):
        fetch.download_known("mosaic")
    assert mosaics() == ["mosaic@1"] and leftovers(studio_home) == []
    ranged.payload = DATA
    again = fetch.download_known("mosaic")
    assert (again.check, again.entry.spec) == ("recorded", "mosaic@2")


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.onnx"  # nothing listens there now: connection refused


def test_exception_offline(studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = refused_url()
    point(monkeypatch, url)
    with pytest.raises(DownloadError, match=f"refused.*fetch {url} elsewhere.*download-model /path/to/model.onnx "
                                            f"--name mosaic` \\(checked against sha256 {sha(DATA)}\\)"):
        fetch.download_known("mosaic")
    assert mosaics() == [] and leftovers(studio_home) == []

    def no_dns(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(fetch.urllib.request, "urlopen", no_dns)
    with pytest.raises(DownloadError, match=r"Name or service not known.*elsewhere"):
        fetch.download_known("mosaic")


def test_exception_timeout(studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts but never answers: the same offline message after the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/model.onnx"
        point(monkeypatch, url)
        with pytest.raises(DownloadError, match=r"timed out.*elsewhere"):
            fetch.download_known("mosaic", timeout=0.3)
    assert mosaics() == []


def test_cli(ranged: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> None:
    point(monkeypatch, ranged.url)  # type: ignore[attr-defined]
    assert main(["download-model", "--list"]) == 0
    assert "  mosaic " in capsys.readouterr().out
    assert main(["download-model", "mosaic", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("registered mosaic@1 -> ")
    assert out[1] == f"sha256 {sha(DATA)} (matches the catalogue's pinned hash)"
    assert out[2].startswith("input RGB 0..255 224x224; licence BSD-3-Clause")
    assert main(["download-model", "--list"]) == 0
    assert "* mosaic " in capsys.readouterr().out

    fetched = tmp_path / "mosaic-9.onnx"  # a file fetched elsewhere, registered by the known name
    fetched.write_bytes(DATA)
    assert main(["download-model", str(fetched), "--name", "mosaic"]) == 0
    assert "registered mosaic@2" in capsys.readouterr().out
    assert registry.entry("mosaic@2").input == registry.entry("mosaic@1").input

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"x" + DATA)
    for argv in (["download-model", str(bad), "--name", "mosaic"],
                 ["download-model", str(fetched), "--name", "mosaic", "--sha256", "1" * 64],
                 ["download-model", "vangogh"], ["download-model"],
                 ["download-model", str(fetched), "--name", "other"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert mosaics() == ["mosaic@1", "mosaic@2"]


def test_cli_offline(studio_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url = refused_url()
    point(monkeypatch, url)
    assert main(["download-model", "mosaic"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"fetch {url} elsewhere" in err
    assert "python -m scripts.cli download-model /path/to/model.onnx --name mosaic" in err
