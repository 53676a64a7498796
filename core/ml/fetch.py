"""Known models fetched by name: resumable HTTP transfer, SHA-256 check, registration with their convention.

Why its own module: :func:`core.ml.registry.download` takes a URL and a hash the user gives; a catalogue
model (:mod:`core.ml.zoo`) brings its own, may have none published, and is megabytes over slow links, so:

1. The bytes go to ``$VP_HOME/models/.partial/<name>.onnx.part``. A transfer cut off mid-file keeps that
   file; the next try (in the same call, up to ``attempts``, or a later run) asks for the rest with
   ``Range: bytes=<size>-``. A server that ignores ranges (200, not 206) gets a clean restart.
2. The whole file's SHA-256 is checked against the catalogue's pin, else against the hash recorded when the
   name was first fetched (the registered entry's ``sha256``), else it is recorded now and reported as such.
   A mismatch deletes the partial file and raises ``ChecksumError`` naming expected and got.
3. Only a verified file is renamed to ``.partial/<name>.stage/<name>.onnx``, given its sidecar
   ``<name>.json`` (``{"range": 255, "channels": "rgb"}``, what core.ml.session reads)
   and registered through :func:`core.ml.registry.register`; any failure registers nothing.

No connection at all (refused, no DNS, timed out) raises :class:`DownloadError` naming the URL to fetch
elsewhere and how to register that file (:func:`register_known_file`).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.atomic import write_json
from core.errors import BadModelError, DownloadError, MediaNotFoundError, ModelError
from core.fingerprint import file_sha256
from core.ml import registry, zoo
from core.ml.registry import ChecksumError, ModelEntry, Progress

BLOCK = 1 << 16
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Fetched:
    """A registered known model and how its hash was checked: "pinned" (the catalogue's), "recorded" (the
    first download's), or "first" (none known before: this download's hash is now the record)."""

    entry: ModelEntry
    sha256: str
    check: str
    resumed_from: int = 0


def partial_path(name: str) -> Path:
    return registry.user_folder() / ".partial" / f"{name}.onnx.part"


def expected_sha256(model: zoo.ZooModel) -> tuple[str | None, str]:
    """The hash to hold a download of ``model`` to and why: the pin, else the first registered version's."""
    if model.sha256:
        return model.sha256, "pinned"
    mine = [e for e in registry.list_models() if e.name == model.name and e.style == model.style]
    return (mine[0].sha256, "recorded") if mine else (None, "first")


class OfflineError(DownloadError):
    """No connection at all (refused, no DNS, unreachable, timed out connecting): retrying at once is futile."""


def fetch_to(url: str, part: Path, on_progress: Progress | None = None, timeout: float = TIMEOUT_S) -> int:
    """Bring ``part`` up to the full file at ``url``, resuming from its size when the server answers 206.

    Returns the byte offset the transfer resumed from (0: from the start). ``on_progress(done, total)`` counts
    the whole file, resumed bytes included. Raises DownloadError (no connection; the transfer cut off: the
    partial file is kept), BadModelError (HTTP 4xx), ModelError (HTTP 5xx).
    """
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is not a prefix the server knows: start again
            part.unlink()
            return fetch_to(url, part, on_progress, timeout)
        cls = BadModelError if 400 <= exc.code < 500 else ModelError
        raise cls(f"download {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        cls = DownloadError if isinstance(reason, ConnectionResetError) else OfflineError  # dropped, not offline
        raise cls(f"cannot reach {url} ({reason})") from exc
    with resp:
        resumed = have if have and resp.status == 206 and _range_start(resp) == have else 0
        if have and resp.status == 206 and not resumed:  # a part we did not ask for: never splice it, start again
            part.unlink(missing_ok=True)
            resp.close()
            return fetch_to(url, part, on_progress, timeout)
        length = resp.headers.get("Content-Length")
        total = resumed + int(length) if length and length.isdigit() else None
        done = resumed
        part.parent.mkdir(parents=True, exist_ok=True)  # only once connected: offline leaves no folder behind
        try:
            with open(part, "ab" if resumed else "wb") as out:
                for block in iter(lambda: resp.read(BLOCK), b""):
                    out.write(block)
                    done += len(block)
                    if on_progress is not None:
                        on_progress(done, total)
                out.flush()
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"download {url} cut off after {done} of {total or '?'} bytes ({exc})") from exc
    if total is not None and done < total:  # http.client returns b"" when the server closes early
        raise DownloadError(f"download {url} cut off after {done} of {total} bytes")
    return resumed


def _range_start(resp: http.client.HTTPResponse) -> int | None:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` answer, None when absent or malformed."""
    value = resp.headers.get("Content-Range", "")
    unit, _, span = value.partition(" ")
    start = span.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def download_known(name: str, *, on_progress: Progress | None = None, activate: bool = True,
                   attempts: int = 3, timeout: float = TIMEOUT_S) -> Fetched:
    """Fetch the catalogue model ``name``, verify it (see the module docstring) and register it as ``name``.

    A transfer cut off mid-file is resumed up to ``attempts`` times in all. Raises ConfigError (unknown
    name), DownloadError (offline: the message names the URL and the register command; or cut off every
    time: run again to resume), ChecksumError (the partial file is deleted), BadModelError/ModelError (HTTP).
    """
    model = zoo.get(name)
    expected, check = expected_sha256(model)
    part = partial_path(name)
    url = model.urls[0]
    for attempt in range(1, attempts + 1):
        try:
            resumed = fetch_to(url, part, on_progress, timeout)
            break
        except OfflineError as exc:
            raise DownloadError(f"cannot download model {name!r}: {exc}; {_elsewhere(url, name, expected)}") from None
        except DownloadError as exc:
            if attempt == attempts:
                raise DownloadError(f"{exc}; run the same command again to resume") from None
    return _register_verified(part, model, expected, check, activate, resumed)


def _elsewhere(url: str, name: str, expected: str | None) -> str:
    """What to do without a connection: the URL to fetch on another machine and the command that registers it."""
    how = (f"checked against sha256 {expected}" if expected else
           "add --sha256 HEX to check it, else its hash is recorded")
    return (f"fetch {url} elsewhere, then register it with "
            f"`python -m scripts.cli download-model /path/to/{url.rsplit('/', 1)[-1]} --name {name}` ({how})")


def register_known_file(path: str | Path, name: str, sha256: str | None = None, *, activate: bool = True) -> Fetched:
    """Register a file of catalogue model ``name`` fetched elsewhere, checked like a download (``sha256``, when
    given, must agree with the pin or the record). The source file is not changed or moved."""
    model = zoo.get(name)
    expected, check = expected_sha256(model)
    given = sha256.strip().lower() if sha256 else None
    if given and expected and given != expected:
        raise ChecksumError(f"model {name!r}: --sha256 {given} is not the {check} sha256 {expected}")
    expected, check = (expected, check) if expected else (given, "given" if given else "first")
    src = Path(path).expanduser()
    if not src.is_file():
        raise MediaNotFoundError(f"model file {src} does not exist")
    got = file_sha256(src)
    if expected and got != expected:
        raise ChecksumError(f"{src}: checksum mismatch: expected {expected}, got {got}")
    staged = _stage(model)
    shutil.copyfile(src, staged)
    return Fetched(_register_staged(staged, model, activate), got, check)


def _register_verified(part: Path, model: zoo.ZooModel, expected: str | None, check: str, activate: bool,
                       resumed: int) -> Fetched:
    got = file_sha256(part)
    if expected and got != expected:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"download {model.urls[0]}: checksum mismatch: expected {expected}, got {got}")
    staged = _stage(model)
    os.replace(part, staged)
    return Fetched(_register_staged(staged, model, activate), got, check, resumed)


def _stage(model: zoo.ZooModel) -> Path:
    """``.partial/<name>.stage/<name>.onnx``: a folder of its own, so only our sidecar travels with the file."""
    folder = partial_path(model.name).with_suffix(".stage")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{model.name}.onnx"


def _register_staged(staged: Path, model: zoo.ZooModel, activate: bool) -> ModelEntry:
    """Register a verified ``staged`` file with the model's convention (its sidecar and the entry's fields),
    then remove the stage whatever happens."""
    try:
        write_json(staged.with_suffix(".json"), model.sidecar())
        return registry.register(staged, model.name, activate=activate, style=model.style, licence=model.licence,
                                 input=model.input_meta())
    finally:
        staged.unlink(missing_ok=True)
        staged.with_suffix(".json").unlink(missing_ok=True)
        for folder in (staged.parent, staged.parent.parent):  # the stage, then .partial/ when nothing else is in it
            with contextlib.suppress(OSError):
                folder.rmdir()


def describe(model: zoo.ZooModel) -> str:
    """One line for ``download-model --list``: name, size, hash status, convention, licence, description."""
    size = f"{model.size / 1e6:.1f} MB" if model.size else "size ?"
    pin = "sha256 pinned" if model.sha256 else "sha256 recorded at first download"
    conv = f"{model.channels.upper()} 0..{model.value_range}"
    if model.input_size:
        conv += f" {model.input_size[0]}x{model.input_size[1]}"
    return f"{model.name:<16} {size:>8}  {pin:<34} {conv:<18} {model.licence:<13} {model.description}"


__all__ = ["Fetched", "OfflineError", "describe", "download_known", "expected_sha256", "fetch_to", "partial_path",
           "register_known_file"]
