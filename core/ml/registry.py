"""The model registry: named, versioned, checksummed ONNX models with an active version per name.

Why a registry and not just files in ``models/``: a style must render the same pixels next month, so a
name points at one exact file (its SHA-256 is checked on every :func:`resolve`), new versions never
overwrite old ones, and a bad version is undone with :func:`rollback`.

Why a review gate: a fine-tune that passed the trainer's gates can still look wrong, and a render asking for
``model=sketch`` must not switch models because a training run finished. So a version's lifecycle is::

    register_candidate ─> candidate ─activate─> active ─(another is activated)─> released (on the history)
                              └─discard─> rejected ─activate─> active      rollback: the last active again

- ``candidate`` (stored as the entry's ``state``): what a fine-tune registers. Never active, whatever its
  gates said; a bare ``name`` never resolves to it; ``name@version`` does (to compare it, or to render it on
  purpose). A name with only candidates has no active version: ``name`` is a one-line ConfigError naming
  the candidate and how to activate it.
- ``rejected`` (stored): a candidate discarded on review. Its files stay on disk (nothing is deleted
  silently) and ``name@version`` still resolves; it is never activated by a rollback; activating it by hand
  is a new review decision and releases it.
- released (no ``state`` stored): everything else: a version a person activated, a download, a bundled
  model, and every entry of a manifest written before candidates existed (those behave as they always did).

Layout (user registry, writable)::

    $VP_HOME/models/manifest.json        {"format": 1, "models": [entry, ...], "active": {name: pointer}}
    $VP_HOME/models/<name>/v<version>.onnx
    $VP_HOME/models/<name>/v<version>.md     its model card, when the trainer wrote one
    $VP_HOME/models/<name>/v<version>.review.json   a fine-tune's gates and held-out scores, for its review

The repo's ``models/manifest.json`` (same format, read-only) adds bundled entries; its files are relative
to the repo's ``models/`` folder. The user manifest's ``active`` pointers win over the bundled ones.

Active pointer semantics: ``{"version": 2, "history": [1]}``. Activating pushes the current version on
``history`` (an activation history: registering a candidate never touches it); :func:`rollback` pops the last
one back (it does not push, so repeated rollbacks walk back through every earlier activation until the
history is empty). A name with no pointer uses its highest released version (none: no active version).

Every write (model files, manifest) is atomic: temp name, fsync, rename (:mod:`core.atomic`), and the
read-modify-write of the manifest holds a file lock so two registrations cannot lose each other's entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from core.assets import ROOT
from core.atomic import fsync_dir, write_bytes, write_json
from core.errors import BadModelError, ConfigError, MediaNotFoundError, ModelError, OutputError
from core.fingerprint import file_sha256
from core.paths import studio_home

FORMAT = 1
MANIFEST = "manifest.json"
BLOCK = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA = re.compile(r"[0-9a-f]{64}")
#: Lineage keys and their types: where a trained model came from (see trainer/).
_LINEAGE: dict[str, tuple[type, ...]] = {"base": (str,), "data_hash": (str,), "epochs": (int,),
                                         "val_loss": (int, float)}
#: stabiliser settings a model may declare (``temporal`` in its entry): the past's weight in the neural mode
_TEMPORAL = ("neural_luma", "neural_chroma", "neural_ssim")
#: ``input`` keys beyond the pixel convention's (core.ml.convention.SIDECAR_KEYS) and their types.
_INPUT: dict[str, tuple[type, ...]] = {"layout": (str,), "precision": (str,), "size": (list, type(None))}
#: a version's lifecycle (see the module docstring): the two stored states, then the two derived ones
CANDIDATE, REJECTED, ACTIVE, RELEASED = "candidate", "rejected", "active", "released"
#: the trainer's review record beside a candidate (gates, scores, held-out pairs): ``v<N>.review.json``
REVIEW_SUFFIX = ".review.json"

Progress = Callable[[int, int | None], None]
Card = Callable[["ModelEntry"], str]


class ChecksumError(BadModelError):
    """Downloaded bytes whose SHA-256 is not the one the user gave: the user's value or the source is wrong,
    so the CLI reports it as a user error (exit 2). Nothing of the download is kept."""


@dataclass(frozen=True)
class ModelEntry:
    """One version of one named model, as stored in a manifest.

    ``file`` is relative to ``folder`` (the manifest's folder; not stored in the JSON). ``input`` is the
    input spec as far as known (e.g. ``{"layout": "NCHW", "range": 255, "size": [720, 720]}``), including
    the pixel convention's keys (``channels``, ``range``, ``mean``, ``std``, ``min_size``: see
    :mod:`core.ml.convention`; they beat the sidecar, and explicit settings beat them); ``lineage``
    holds any of ``base``, ``data_hash``, ``epochs``, ``val_loss``. ``weights_sha256`` is set for models
    trained here: their trainable weights sit beside the model as ``<file stem>.npz`` (see trainer/).
    ``temporal``: stabiliser settings measured for this model (``neural_luma``, ``neural_chroma``, each in
    [0, 0.95], ``neural_ssim`` in [0, 0.999]): a network that flickers little to begin with can hold more of
    the past without smearing, so a render with it uses them unless the user sets ``temporal.*``.
    ``state``: ``"candidate"`` (awaiting review) or ``"rejected"`` (discarded on review); None: released.
    """

    name: str
    version: int
    file: str
    sha256: str
    created: str
    style: str = ""
    licence: str = ""
    input: dict[str, Any] | None = None
    lineage: dict[str, Any] | None = None
    measured_fps: float | None = None
    weights_sha256: str | None = None
    temporal: dict[str, float] | None = None
    state: str | None = None
    folder: Path = field(default=Path(), compare=False, repr=False)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def card_path(self) -> Path | None:
        """The model card: ``<file stem>.md`` beside the model, else (bundled models) ``<name>.md`` in its
        folder; None when there is neither."""
        for path in (self.path.with_suffix(".md"), self.folder / f"{self.name}.md"):
            if path.is_file():
                return path
        return None

    @property
    def review_path(self) -> Path | None:
        """The trainer's review record (``v<N>.review.json``: gates, held-out scores and pairs); None without."""
        path = self.path.with_suffix(REVIEW_SUFFIX)
        return path if path.is_file() else None

    @property
    def convention(self) -> Any:
        """The pixel convention this entry's ``input`` declares (a :class:`core.ml.convention.Convention`,
        fields it does not say are None); None when it declares none. Validated when the manifest loaded."""
        from core.ml.convention import SIDECAR_KEYS, from_dict

        said = {k: v for k, v in (self.input or {}).items() if k in SIDECAR_KEYS}
        return from_dict(said, f"model {self.spec}") if said else None

    @property
    def weights_path(self) -> Path | None:
        return self.path.with_suffix(".npz") if self.weights_sha256 else None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["folder"]
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class ModelInfo:
    """Every version of one name (candidates and rejected ones too), which one is active (None: none yet, only
    candidates or rejected versions) and the activation history (oldest first)."""

    name: str
    active: int | None
    versions: tuple[ModelEntry, ...]
    history: tuple[int, ...]

    @property
    def active_entry(self) -> ModelEntry:
        """The active version; ConfigError, in one line saying what to do, when there is none."""
        for e in self.versions:
            if e.version == self.active:
                return e
        waiting = [e.spec for e in self.versions if e.state == CANDIDATE]
        if waiting:
            _no_active(self.name, waiting, "a candidate awaiting review" if len(waiting) == 1
                       else "candidates awaiting review")
        _no_active(self.name, [e.spec for e in self.versions], "rejected on review")

    def state(self, version: int) -> str:
        """``"active"``, ``"candidate"``, ``"rejected"`` or ``"released"``."""
        if version == self.active:
            return ACTIVE
        for e in self.versions:
            if e.version == version:
                return e.state or RELEASED
        raise ConfigError(f"model {self.name!r}: no version {version}")

    @property
    def candidates(self) -> tuple[ModelEntry, ...]:
        return tuple(e for e in self.versions if e.state == CANDIDATE and e.version != self.active)


def _no_active(name: str, specs: list[str], why: str) -> NoReturn:
    last = specs[-1]
    raise ConfigError(f"model {name!r} has no active version: {', '.join(specs)} {'is' if len(specs) == 1 else 'are'} "
                      f"{why}; activate one (`python -m scripts.cli models activate {last}` or the Trainer page), "
                      f"or name the version (model={last}) to use it unreviewed")


# ---------------------------------------------------------------------------------------------- manifests

def user_folder() -> Path:
    return studio_home() / "models"


def bundled_manifest() -> Path:
    return ROOT / "models" / MANIFEST


def _check_type(where: Path, key: str, value: Any, types: tuple[type, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        want = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{where}: {key} must be {want}, got {value!r}")


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: bad model name {name!r} (letters, digits, '_', '.', '-'; at most 64)")
    return name


def _entry_from_dict(d: Any, where: Path, folder: Path) -> ModelEntry:
    """Strictly validate one manifest entry: unknown keys, missing keys and wrong types raise ConfigError."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: a model entry must be an object, got {d!r}")
    known = {f.name for f in fields(ModelEntry)} - {"folder"}
    for key in d:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} in model entry (known: {', '.join(sorted(known))})")
    for key in ("name", "version", "file", "sha256", "created"):
        if key not in d:
            raise ConfigError(f"{where}: model entry {d.get('name', '?')!r} lacks key {key!r}")
    label = f"{where}: {d['name']!r}"
    check_name(d["name"], str(where))
    _check_type(where, "version", d["version"], (int,))
    if d["version"] < 1:
        raise ConfigError(f"{label}: version must be >= 1, got {d['version']!r}")
    for key in ("file", "sha256", "created", "style", "licence"):
        _check_type(where, key, d.get(key, ""), (str,))
    if not _SHA.fullmatch(d["sha256"]):
        raise ConfigError(f"{label}: sha256 must be 64 lowercase hex digits, got {d['sha256']!r}")
    file = Path(d["file"])
    if file.is_absolute() or ".." in file.parts:
        raise ConfigError(f"{label}: file must be relative to the manifest's folder, got {d['file']!r}")
    try:
        datetime.fromisoformat(d["created"])
    except ValueError:
        raise ConfigError(f"{label}: created must be an ISO time, got {d['created']!r}") from None
    _check_type(where, "input", d.get("input"), (dict,), optional=True)
    _check_input(d.get("input"), where, label)
    _check_type(where, "lineage", d.get("lineage"), (dict,), optional=True)
    for key, value in (d.get("lineage") or {}).items():
        if key not in _LINEAGE:
            raise ConfigError(f"{label}: unknown lineage key {key!r} (known: {', '.join(_LINEAGE)})")
        _check_type(where, f"lineage.{key}", value, _LINEAGE[key], optional=True)
    _check_type(where, "measured_fps", d.get("measured_fps"), (int, float), optional=True)
    _check_type(where, "weights_sha256", d.get("weights_sha256"), (str,), optional=True)
    if d.get("weights_sha256") is not None and not _SHA.fullmatch(d["weights_sha256"]):
        raise ConfigError(f"{label}: weights_sha256 must be 64 lowercase hex digits, got {d['weights_sha256']!r}")
    if d.get("state") is not None and d["state"] not in (CANDIDATE, REJECTED):
        raise ConfigError(f"{label}: state must be {CANDIDATE!r} or {REJECTED!r} (absent: released), "
                          f"got {d['state']!r}")
    _check_type(where, "temporal", d.get("temporal"), (dict,), optional=True)
    for key, value in (d.get("temporal") or {}).items():
        if key not in _TEMPORAL:
            raise ConfigError(f"{label}: unknown temporal key {key!r} (known: {', '.join(_TEMPORAL)})")
        _check_type(where, f"temporal.{key}", value, (int, float))
        top = 0.999 if key == "neural_ssim" else 0.95
        if not 0.0 <= value <= top:
            raise ConfigError(f"{label}: temporal.{key} must be in [0, {top}], got {value!r}")
    fps = d.get("measured_fps")
    return ModelEntry(**{**d, "measured_fps": None if fps is None else float(fps)}, folder=folder)


def _check_input(inp: dict[str, Any] | None, where: Path, label: str) -> None:
    """An entry's ``input``: known keys only, each of its type; the convention's keys as strictly as a sidecar."""
    from core.ml.convention import SIDECAR_KEYS, from_dict

    for key, value in (inp or {}).items():
        if key not in _INPUT and key not in SIDECAR_KEYS:
            raise ConfigError(f"{label}: unknown input key {key!r} (known: {', '.join([*_INPUT, *SIDECAR_KEYS])})")
        if key in _INPUT:
            _check_type(where, f"input.{key}", value, _INPUT[key])
    size = (inp or {}).get("size")
    if size is not None and (len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                        for v in size)):
        raise ConfigError(f"{label}: input.size must be null or [height, width] in pixels, got {size!r}")
    try:
        from_dict(inp or {}, f"{label}: input")
    except BadModelError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class _Manifest:
    path: Path
    entries: tuple[ModelEntry, ...]
    active: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "models": [e.to_json() for e in self.entries], "active": self.active}


def _load(path: Path) -> _Manifest:
    """A manifest, strictly; a missing file is an empty registry."""
    if not path.is_file():
        return _Manifest(path, (), {})
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON model manifest ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model manifest must be a JSON object")
    for key in data:
        if key not in ("format", "models", "active"):
            raise ConfigError(f"{path}: unknown key {key!r} (known: format, models, active)")
    if data.get("format", FORMAT) != FORMAT:
        raise ConfigError(f"{path}: format must be {FORMAT}, got {data['format']!r}")
    _check_type(path, "models", data.get("models", []), (list,))
    _check_type(path, "active", data.get("active", {}), (dict,))
    entries = tuple(_entry_from_dict(d, path, path.parent) for d in data.get("models", []))
    seen: set[str] = set()
    for e in entries:
        if e.spec in seen:
            raise ConfigError(f"{path}: {e.spec} is listed twice")
        seen.add(e.spec)
    active = {}
    for name, ptr in data.get("active", {}).items():
        check_name(name, f"{path}: active")
        if not isinstance(ptr, dict) or set(ptr) != {"version", "history"}:
            raise ConfigError(f"{path}: active.{name} must be {{'version': int, 'history': [int]}}, got {ptr!r}")
        _check_type(path, f"active.{name}.version", ptr["version"], (int,))
        _check_type(path, f"active.{name}.history", ptr["history"], (list,))
        for v in ptr["history"]:
            _check_type(path, f"active.{name}.history[]", v, (int,))
        active[name] = {"version": ptr["version"], "history": list(ptr["history"])}
    return _Manifest(path, entries, active)


def _save(m: _Manifest) -> None:
    try:
        m.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(m.path, m.to_json())
    except OSError as exc:
        raise OutputError(f"{m.path}: could not write the model manifest ({exc}); the previous one is kept") from exc


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise read-modify-write of the user manifest between processes."""
    folder = user_folder()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".manifest.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _user() -> _Manifest:
    return _load(user_folder() / MANIFEST)


def _all() -> tuple[list[ModelEntry], dict[str, dict[str, Any]]]:
    """Bundled plus user entries (a user entry shadows a bundled one of the same name@version) and pointers."""
    bundled, user = _load(bundled_manifest()), _user()
    mine = {e.spec for e in user.entries}
    entries = [e for e in bundled.entries if e.spec not in mine] + list(user.entries)
    return sorted(entries, key=lambda e: (e.name, e.version)), {**bundled.active, **user.active}


# ---------------------------------------------------------------------------------------------- queries

def list_models(*, candidates: bool = False) -> list[ModelEntry]:
    """Every released version of every name (what a render may pick), sorted by name then version;
    ``candidates=True``: also the candidates and rejected versions (what a reviewer sees)."""
    entries, active = _all()
    if candidates:
        return entries
    return [e for e in entries if e.state is None or active.get(e.name, {}).get("version") == e.version]


def info(name: str) -> ModelInfo:
    """All versions of ``name`` and which is active; ConfigError when the name is not registered."""
    entries, active = _all()
    versions = tuple(e for e in entries if e.name == name)
    if not versions:
        names = sorted({e.name for e in entries})
        raise ConfigError(f"model {name!r} is not registered (registered: {', '.join(names) or 'none'})")
    released = [e.version for e in versions if e.state is None]
    ptr = active.get(name, {"version": released[-1] if released else None, "history": []})
    if ptr["version"] is None:
        return ModelInfo(name, None, versions, ())
    if ptr["version"] not in {e.version for e in versions}:
        raise ConfigError(f"{user_folder() / MANIFEST}: active version {ptr['version']} of {name!r} is not registered")
    return ModelInfo(name, ptr["version"], versions, tuple(ptr["history"]))


def _split(spec: str) -> tuple[str, int | None]:
    name, at, version = spec.partition("@")
    if not at:
        return name, None
    if not version.isdigit():
        raise ConfigError(f"model {spec!r}: version after '@' must be a number, got {version!r}")
    return name, int(version)


def is_registered(spec: str) -> bool:
    """True when the name part of ``spec`` (``name`` or ``name@version``) is a registered model, candidates
    included (so a render naming one gets the registry's one-line "no active version" error)."""
    name = spec.partition("@")[0]
    return bool(_NAME.fullmatch(name)) and any(e.name == name for e in _all()[0])


def entry(spec: str) -> ModelEntry:
    """The entry for ``name`` (its active version; ConfigError when it has none) or ``name@version`` (any
    state: a candidate is compared, or rendered on purpose, by its version)."""
    name, version = _split(spec)
    i = info(name)
    if version is None:
        return i.active_entry
    for e in i.versions:
        if e.version == version:
            return e
    have = ", ".join(str(e.version) for e in i.versions)
    raise ConfigError(f"model {spec!r}: no version {version} (versions: {have})")


def resolve(spec: str) -> Path:
    """The file of ``name`` or ``name@version``, after checking its SHA-256 against the manifest.

    Raises ConfigError (unknown name or version), MediaNotFoundError (file gone), BadModelError (file changed:
    the same request fails again, so it is refused as a bad model, not retried).
    """
    e = entry(spec)
    if not e.path.is_file():
        raise MediaNotFoundError(f"model {e.spec}: file {e.path} is missing")
    got = file_sha256(e.path)
    if got != e.sha256:
        raise BadModelError(f"model {e.spec}: file {e.path} does not match its manifest "
                         f"(sha256 expected {e.sha256}, got {got})")
    return e.path.resolve()


def resolve_weights(spec: str) -> Path:
    """The trainable weights (``.npz``) of a model trained here, checked against the manifest.

    Raises ConfigError when the model has none (third-party models cannot be fine-tuned).
    """
    e = entry(spec)
    path = e.weights_path
    if path is None:
        raise ConfigError(f"model {e.spec}: has no trainable weights; only models trained here can be fine-tuned")
    if not path.is_file():
        raise MediaNotFoundError(f"model {e.spec}: weights file {path} is missing")
    got = file_sha256(path)
    if got != e.weights_sha256:
        raise BadModelError(f"model {e.spec}: weights {path} do not match the manifest "
                         f"(sha256 expected {e.weights_sha256}, got {got})")
    return path.resolve()


# ---------------------------------------------------------------------------------------------- changes

def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _set_active(m: _Manifest, name: str, version: int, current: int | None) -> _Manifest:
    ptr = m.active.get(name, {"version": current, "history": []})
    history = list(ptr["history"])
    if ptr["version"] is not None and ptr["version"] != version:
        history.append(ptr["version"])
    return _Manifest(m.path, m.entries, {**m.active, name: {"version": version, "history": history}})


def _current(name: str) -> int | None:
    try:
        return info(name).active
    except ConfigError:
        return None


def _add(staged: Path, name: str, sha: str, activate: bool, meta: dict[str, Any],
         companions: dict[str, bytes] | None = None, card: Card | None = None) -> ModelEntry:
    """Rename a fully written, checksummed ``staged`` file into ``<name>/v<N>.onnx`` (with its companion
    files, by extension, and its card) and record it. A released version is activated when asked or when
    the name has no active version; a candidate never is."""
    with _locked():
        m = _user()
        version = max((e.version for e in _all()[0] if e.name == name), default=0) + 1
        rel = f"{name}/v{version}.onnx"
        new = _entry_from_dict({**meta, "name": name, "version": version, "file": rel, "sha256": sha,
                                "created": meta.get("created", _now())}, m.path, m.path.parent)
        current = _current(name)
        final = m.path.parent / rel
        companions = {**(companions or {}), **({".md": card(new).encode()} if card is not None else {})}
        for ext, data in companions.items():
            write_bytes(final.with_suffix(ext), data)
        os.replace(staged, final)
        fsync_dir(final.parent)
        updated = _Manifest(m.path, (*m.entries, new), m.active)
        if new.state is None and (activate or current is None):
            updated = _set_active(updated, name, version, current)
        try:
            _save(updated)
        except BaseException:
            for ext in (".onnx", *companions):
                final.with_suffix(ext).unlink(missing_ok=True)
            raise
        return new


def _staging(name: str) -> Path:
    folder = user_folder() / check_name(name, "register")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f".incoming.{os.getpid()}.{secrets.token_hex(4)}.onnx.tmp"


def _drop_staged(tmp: Path) -> None:
    tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        tmp.parent.rmdir()  # only when empty: a failed first registration leaves no folder


def register(path: str | Path, name: str, *, activate: bool = True, card: Card | None = None,
             **meta: Any) -> ModelEntry:
    """Copy ``path`` into the registry as the next released version of ``name`` and (by default) activate it.

    For a model a person chose as it is (a download, a file they give); a fine-tune goes through
    :func:`register_candidate` instead, so it is reviewed before anything renders with it.

    ``card(entry) -> Markdown``: the model card, written beside the model as ``v<N>.md`` before the manifest
    names it (called under the manifest's lock, once the version is known, so the card can name it).

    ``meta`` takes the optional manifest fields (style, licence, input, lineage, measured_fps, created),
    validated as strictly as a manifest. A name with no active version activates it anyway. Companions
    travel with the model: ``<stem>.json`` (its value range, see core.ml.session) and ``<stem>.npz`` (the
    trainer's weights, recorded with their checksum); both land before the manifest names the model.
    """
    return _register(path, name, activate, card, None, meta, None)


def register_candidate(path: str | Path, name: str, *, card: Card | None = None,
                       review: Mapping[str, Any] | None = None, **meta: Any) -> ModelEntry:
    """Register ``path`` as the next version of ``name`` in state ``"candidate"``: never active, so a bare
    ``name`` keeps resolving to the version it did until :func:`activate` (or has none, for a new name).

    ``review``: the trainer's figures for the reviewer (JSON-able), written beside the model as
    ``v<N>.review.json`` (:attr:`ModelEntry.review_path`) with the card, before the manifest names it.
    Otherwise as :func:`register`.
    """
    return _register(path, name, False, card, review, meta, CANDIDATE)


def _register(path: str | Path, name: str, activate: bool, card: Card | None, review: Mapping[str, Any] | None,
              meta: dict[str, Any], state: str | None) -> ModelEntry:
    src = Path(path).expanduser()
    if not src.is_file():
        raise MediaNotFoundError(f"model file {src} does not exist")
    _check_meta(meta)
    meta = {**meta, "state": state} if state is not None else meta
    companions = {ext: src.with_suffix(ext).read_bytes() for ext in (".json", ".npz")
                  if src.with_suffix(ext).is_file()}
    if ".npz" in companions:
        meta = {**meta, "weights_sha256": hashlib.sha256(companions[".npz"]).hexdigest()}
    if review is not None:
        companions[REVIEW_SUFFIX] = (json.dumps(review, indent=1, sort_keys=True) + "\n").encode()
    tmp = _staging(name)
    try:
        sha = _copy(src, tmp, None)
        return _add(tmp, name, sha, activate, meta, companions, card)
    finally:
        _drop_staged(tmp)


def _check_meta(meta: dict[str, Any]) -> None:
    for key in ("name", "version", "file", "sha256", "weights_sha256", "state"):
        if key in meta:
            raise ConfigError(f"register: {key!r} is set by the registry, not by the caller")


def _with_state(m: _Manifest, spec: str, state: str | None) -> _Manifest:
    entries = tuple(replace(e, state=state) if e.spec == spec else e for e in m.entries)
    return _Manifest(m.path, entries, m.active)


def activate(name: str, version: int) -> ModelEntry:
    """Make ``name@version`` the version a bare ``name`` resolves to; the previous one goes on the history.

    The review's yes: a candidate (or a rejected version, on second thoughts) becomes released for good."""
    with _locked():
        e = entry(f"{name}@{version}")
        m = _with_state(_user(), e.spec, None)
        _save(_set_active(m, name, e.version, _current(name)))
        return replace(e, state=None)


def discard(name: str, version: int) -> ModelEntry:
    """The review's no: mark the candidate ``name@version`` rejected. Nothing is deleted (its model, card and
    review stay in ``<name>/``, ``name@version`` still resolves) and the active version is untouched;
    a rejected version is never activated by a rollback. ConfigError for anything but a candidate."""
    with _locked():
        i = info(name)
        e = entry(f"{name}@{version}")
        if e.state != CANDIDATE:
            raise ConfigError(f"model {e.spec} is {i.state(e.version)}, not a candidate: only a candidate awaiting "
                              f"review can be discarded")
        m = _user()
        if e.spec not in {x.spec for x in m.entries}:
            raise ConfigError(f"model {e.spec} is bundled with the studio (models/manifest.json, read-only)")
        _save(_with_state(m, e.spec, REJECTED))
        return replace(e, state=REJECTED)


def rollback(name: str) -> ModelEntry:
    """Return ``name`` to the version active before the last activation (the activation history, not the
    version number before); ConfigError when there is none. A version on the history that is no longer
    released (discarded, or never reviewed: only a hand-edited manifest has one there) is skipped."""
    with _locked():
        i = info(name)
        released = {e.version for e in i.versions if e.state is None}
        rest = list(i.history)
        while rest and rest[-1] not in released:
            rest.pop()
        if not rest:
            now = f"v{i.active} is the first active version" if i.active is not None else "none was ever active"
            raise ConfigError(f"model {name!r}: nothing to roll back to ({now})")
        previous = rest.pop()
        m = _user()
        _save(_Manifest(m.path, m.entries, {**m.active, name: {"version": previous, "history": rest}}))
        return entry(f"{name}@{previous}")


# ---------------------------------------------------------------------------------------------- download

def _copy(src: Path, tmp: Path, on_progress: Progress | None) -> str:
    """Stream a local file to ``tmp`` (fsynced), returning the SHA-256 of what was written. A source the user
    gave that cannot be read is a BadModelError naming it."""
    try:
        fh = open(src, "rb")  # noqa: SIM115 (closed below; only the open is the user's problem)
    except OSError as exc:
        raise BadModelError(f"model file {src}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    with fh:
        return _stream(fh, src.stat().st_size, tmp, on_progress)


def _stream(fh: Any, total: int | None, tmp: Path, on_progress: Progress | None) -> str:
    h, done = hashlib.sha256(), 0
    with open(tmp, "xb") as out:
        for block in iter(lambda: fh.read(BLOCK), b""):
            out.write(block)
            h.update(block)
            done += len(block)
            if on_progress is not None:
                on_progress(done, total)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def download(url_or_path: str, sha256: str, name: str, *, on_progress: Progress | None = None,
             activate: bool = True, **meta: Any) -> ModelEntry:
    """Fetch a model from an http(s) URL or a local path, verify ``sha256``, then register it as ``name``.

    The bytes go to a temp file beside their final place and are renamed in only when the checksum
    matches; on a mismatch or any error the temp file is deleted and the manifest is untouched.
    ``on_progress(done_bytes, total_bytes or None)`` is called after each block.
    Raises ChecksumError (a BadModelError) "checksum mismatch: expected X, got Y", BadModelError for a URL the
    server refuses (HTTP 4xx) or a local file that cannot be read, ModelError for another failed transfer,
    MediaNotFoundError for a missing local path, ConfigError for a malformed sha256 or name.
    """
    expected = sha256.strip().lower()
    if not _SHA.fullmatch(expected):
        raise ConfigError(f"download {url_or_path}: sha256 must be 64 hex digits, got {sha256!r}")
    _check_meta(meta)
    is_url = url_or_path.startswith(("http://", "https://"))
    src = Path(url_or_path).expanduser()
    if not is_url and not src.is_file():
        raise MediaNotFoundError(f"model file {src} does not exist")
    tmp = _staging(name)
    try:
        if is_url:
            try:
                with urllib.request.urlopen(url_or_path, timeout=60) as resp:
                    length = resp.headers.get("Content-Length")
                    got = _stream(resp, int(length) if length and length.isdigit() else None, tmp, on_progress)
            except urllib.error.HTTPError as exc:  # the server answered: a 4xx is the URL's fault, a 5xx theirs
                cls = BadModelError if 400 <= exc.code < 500 else ModelError
                raise cls(f"download {url_or_path} failed: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise ModelError(f"download {url_or_path} failed: {exc}") from exc
        else:
            got = _copy(src, tmp, on_progress)
        if got != expected:
            raise ChecksumError(f"download {url_or_path}: checksum mismatch: expected {expected}, got {got}")
        return _add(tmp, name, got, activate, meta)
    finally:
        _drop_staged(tmp)


__all__ = ["ACTIVE", "CANDIDATE", "REJECTED", "RELEASED", "ChecksumError", "ModelEntry", "ModelInfo", "activate",
           "check_name", "discard", "download", "entry", "info", "is_registered", "list_models", "register",
           "register_candidate", "resolve", "resolve_weights", "rollback"]
