"""The feedback store: A/B judgements of stylized frames, and approved (input, output) training pairs.

Why: the learning loop (preference model, auto-tuning, fine-tuning) learns only from what people said
about real outputs, so every judgement is kept exactly as given: records are append-only (SQLite
triggers refuse UPDATE and DELETE); a correction is a new record whose ``supersedes`` names the old one.

Where things live (everything beside the database, so a database and its images move together)::

    <db folder>/studio.db                               tables ab_records, approvals (core.db)
    <db folder>/feedback/<uuid>/input.png, a.png, b.png the frames one record judged
    <db folder>/pairs/<pair_set>/inputs/<stem>.png      approved pairs, in trainer.dataset's layout
    <db folder>/pairs/<pair_set>/targets/<stem>.png
    <db folder>/pairs/<pair_set>/groups.json            {stem: clip}: the fine-tune validates by clip

The db folder is :func:`core.paths.studio_home` unless a ``db=`` path is given.

Crash safety: a record's PNGs are written atomically (temp, fsync, rename) *before* its row is committed,
so a crash leaves at worst a folder no row names (harmless), never a row naming missing files. An
approval writes the pair's input, then its target, then commits its row, all while holding the
database's write lock; files of an approval that never committed are removed by the next approval in
that pair set, so the folder converges to exactly the approved pairs.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, db
from core.errors import ConfigError, MediaNotFoundError, OutputError
from core.video.stills import write_image

FEEDBACK_DIR, PAIRS_DIR = "feedback", "pairs"
INPUT_PNG, A_PNG, B_PNG = "input.png", "a.png", "b.png"
GROUPS_JSON = "groups.json"  # trainer.dataset.GROUPS (core does not import trainer)
CHOICES = ("A", "B", "tie")
VARIANTS = ("A", "B")
MAX_TEXT = 10_000

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}@[0-9]+")
_STEM = re.compile(r"fb(\d+)-([AB])")

_APPEND_ONLY = """
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: add a new record instead'); END;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: add a new record instead'); END;
"""

db.register("feedback", [
    """
    CREATE TABLE ab_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,
        clip TEXT NOT NULL,
        frame_index INTEGER,
        t_start REAL,
        t_end REAL,
        folder TEXT NOT NULL UNIQUE,
        a_style TEXT NOT NULL, a_params TEXT NOT NULL, a_model TEXT NOT NULL, a_metrics TEXT,
        b_style TEXT NOT NULL, b_params TEXT NOT NULL, b_model TEXT NOT NULL, b_metrics TEXT,
        choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie')),
        rating INTEGER CHECK (rating BETWEEN 1 AND 5),
        rater TEXT NOT NULL,
        comment TEXT NOT NULL,
        supersedes INTEGER REFERENCES ab_records (id),
        CHECK ((frame_index IS NOT NULL AND t_start IS NULL AND t_end IS NULL)
            OR (frame_index IS NULL AND t_start IS NOT NULL AND t_end IS NOT NULL AND t_start < t_end))
    );
    CREATE INDEX ab_records_clip ON ab_records (clip);
    CREATE INDEX ab_records_supersedes ON ab_records (supersedes);
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,
        record_id INTEGER NOT NULL REFERENCES ab_records (id),
        variant TEXT NOT NULL CHECK (variant IN ('A', 'B')),
        pair_set TEXT NOT NULL,
        stem TEXT NOT NULL,
        UNIQUE (pair_set, stem)
    );
    """ + _APPEND_ONLY.format(table="ab_records") + _APPEND_ONLY.format(table="approvals"),
])


@dataclass(frozen=True)
class Variant:
    """One side of an A/B comparison.

    ``style``: a style name (``cartoon``); ``params``: its parameters (JSON-serialisable, string keys);
    ``model``: ``"name@version"`` for a neural style, else ``""``; ``metrics``: name -> finite number
    (e.g. flicker, SSIM to the input) or ``None`` when not measured. ``frame`` is the PNG of this side,
    set by the store on the records it returns; leave it ``None`` when recording (the pixels are passed
    as arrays, and the store owns the file).
    """

    style: str
    params: Mapping[str, Any] = field(default_factory=dict)
    model: str = ""
    metrics: Mapping[str, float] | None = None
    frame: Path | None = None


@dataclass(frozen=True)
class Record:
    """One stored A/B judgement. Exactly one of ``frame_index`` and ``time_range`` (seconds) is set;
    ``input_frame`` and the variants' ``frame`` are absolute paths to PNGs that exist."""

    id: int
    created: str
    clip: str
    frame_index: int | None
    time_range: tuple[float, float] | None
    a: Variant
    b: Variant
    input_frame: Path
    choice: str
    rating: int | None
    rater: str
    comment: str
    supersedes: int | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings): the shape of one line of :func:`export_jsonl`."""
        def side(v: Variant) -> dict[str, Any]:
            return {"style": v.style, "params": dict(v.params), "model": v.model,
                    "metrics": None if v.metrics is None else dict(v.metrics), "frame": str(v.frame)}

        return {"id": self.id, "created": self.created, "clip": self.clip, "frame_index": self.frame_index,
                "time_range": None if self.time_range is None else list(self.time_range),
                "a": side(self.a), "b": side(self.b), "input_frame": str(self.input_frame),
                "choice": self.choice, "rating": self.rating, "rater": self.rater, "comment": self.comment,
                "supersedes": self.supersedes}


# ------------------------------------------------------------------------------------------------ places

def _db_path(path: str | Path | None) -> Path:
    return Path(path) if path is not None else db.default_path()


def feedback_root(*, db_path: str | Path | None = None) -> Path:
    """The folder holding every record's frames: ``<db folder>/feedback``."""
    return _db_path(db_path).parent / FEEDBACK_DIR


def pairs_folder(pair_set: str = "approved", *, db_path: str | Path | None = None) -> Path:
    """``<db folder>/pairs/<pair_set>``: give it to the trainer (``scripts.cli train --pairs DIR``,
    :func:`trainer.dataset.load_pairs`). The folder may not exist before the first approval."""
    return _db_path(db_path).parent / PAIRS_DIR / _check_name(pair_set, "pair_set")


@contextlib.contextmanager
def _open(path: str | Path | None) -> Iterator[sqlite3.Connection]:
    conn = db.connect(_db_path(path))
    try:
        db.migrate(conn, ["feedback"])
        yield conn
    finally:
        conn.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------------------------------ checks

def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"{what}: expected a name (letters, digits, '_', '.', '-'; at most 64), got {value!r}")
    return value


def _check_text(value: Any, what: str, *, empty: bool) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()) or len(value) > MAX_TEXT or "\0" in value:
        need = "a string" if empty else "a non-empty string"
        raise ConfigError(f"{what}: expected {need} of at most {MAX_TEXT} characters, got {value!r:.80}")
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _check_params(value: Any, what: str) -> str:
    """-> canonical JSON text (sorted keys), so equal parameters compare equal in the database."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{what}: expected a dict with string keys, got {value!r:.80}")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: not JSON-serialisable ({exc})") from None


def _check_metrics(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what}: expected a dict of name -> number or None, got {value!r:.80}")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{what}: metric names must be non-empty strings, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ConfigError(f"{what}[{k!r}]: expected a finite number, got {v!r}")
        out[k] = float(v)
    return json.dumps(out, sort_keys=True)


def _check_variant(v: Any, what: str) -> tuple[str, str, str, str | None]:
    """-> (style, params JSON, model, metrics JSON or None)."""
    if not isinstance(v, Variant):
        raise ConfigError(f"{what}: expected a Variant, got {type(v).__name__}")
    if v.frame is not None:
        raise ConfigError(f"{what}.frame: must be None when recording (the store writes the frame), "
                          f"got {v.frame!r}")
    if not isinstance(v.model, str) or (v.model and not _MODEL.fullmatch(v.model)):
        raise ConfigError(f"{what}.model: expected 'name@version' or '', got {v.model!r}")
    return (_check_name(v.style, f"{what}.style"), _check_params(v.params, f"{what}.params"), v.model,
            _check_metrics(v.metrics, f"{what}.metrics"))


def _check_at(at: Any) -> tuple[int | None, float | None, float | None]:
    """A frame index (int >= 0) or a (start, end) time range in seconds with 0 <= start < end."""
    if isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        if at < 0:
            raise ConfigError(f"at: a frame index must be >= 0, got {at}")
        return int(at), None, None
    if isinstance(at, (tuple, list)) and len(at) == 2:
        start, end = at
        if all(isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(float(t)) for t in at) \
                and 0 <= float(start) < float(end):
            return None, float(start), float(end)
    raise ConfigError(f"at: expected a frame index >= 0 or a (start, end) time range in seconds with "
                      f"0 <= start < end, got {at!r}")


def _check_frames(frames: dict[str, Any]) -> None:
    shapes = {}
    for what, rgb in frames.items():
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 \
                or rgb.size == 0:
            got = f"{getattr(rgb, 'shape', type(rgb).__name__)} {getattr(rgb, 'dtype', '')}".strip()
            raise ConfigError(f"{what}: expected (H, W, 3) uint8 RGB, got {got}")
        shapes[what] = rgb.shape
    if len(set(shapes.values())) > 1:
        raise ConfigError("frames must share one size (a training pair needs it), got "
                          + ", ".join(f"{k} {v[1]}x{v[0]}" for k, v in shapes.items()))


def _check_choice(choice: Any, rating: Any) -> None:
    if choice not in CHOICES:
        raise ConfigError(f"choice: expected one of {', '.join(CHOICES)}, got {choice!r}")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, np.integer))
                               or not 1 <= rating <= 5):
        raise ConfigError(f"rating: expected an integer 1..5 or None, got {rating!r}")


# ------------------------------------------------------------------------------------------------ writing

def record_ab(clip: str | Path, at: int | tuple[float, float], a: Variant, b: Variant,
              a_rgb: np.ndarray, b_rgb: np.ndarray, input_rgb: np.ndarray, *, choice: str, rater: str,
              rating: int | None = None, comment: str = "", supersedes: int | None = None,
              db_path: str | Path | None = None) -> int:
    """Store one A/B judgement and return its id (ids only grow, never reused).

    ``at`` is the frame index judged, or a (start, end) time range in seconds. ``a_rgb``, ``b_rgb``,
    ``input_rgb`` are (H, W, 3) uint8 RGB of one size (not modified). ``choice`` is "A", "B" or "tie";
    ``rating`` 1..5 or None; ``supersedes`` the id of a record this one corrects.

    Everything is validated before anything is written (:class:`ConfigError` naming the field); the
    PNGs are then written and fsynced, and only then is the row committed (see the module docstring).
    Safe to call from many processes at once. Raises :class:`OutputError` if the files cannot be written.
    """
    clip = _check_text(str(clip) if isinstance(clip, Path) else clip, "clip", empty=False)
    frame_index, t_start, t_end = _check_at(at)
    sides = [_check_variant(a, "a"), _check_variant(b, "b")]
    _check_frames({"a_rgb": a_rgb, "b_rgb": b_rgb, "input_rgb": input_rgb})
    _check_choice(choice, rating)
    rater = _check_text(rater, "rater", empty=False)
    comment = _check_text(comment, "comment", empty=True)
    if supersedes is not None and (isinstance(supersedes, bool) or not isinstance(supersedes, int)):
        raise ConfigError(f"supersedes: expected a record id or None, got {supersedes!r}")

    with _open(db_path) as conn:
        root = feedback_root(db_path=db_path)
        folder = uuid.uuid4().hex
        try:
            for name, rgb in ((INPUT_PNG, input_rgb), (A_PNG, a_rgb), (B_PNG, b_rgb)):
                write_image(root / folder / name, rgb)
            atomic.fsync_dir(root)  # the new folder's own entry, so the files survive a power cut too
            with db.transaction(conn):
                if supersedes is not None and not _exists(conn, supersedes):
                    raise ConfigError(f"supersedes: no feedback record {supersedes} in {db.db_file(conn)}")
                cur = conn.execute(
                    "INSERT INTO ab_records (created, clip, frame_index, t_start, t_end, folder, a_style, a_params,"
                    " a_model, a_metrics, b_style, b_params, b_model, b_metrics, choice, rating, rater, comment,"
                    " supersedes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (_now(), clip, frame_index, t_start, t_end, folder, *sides[0], *sides[1], choice,
                     None if rating is None else int(rating), rater, comment, supersedes))
        except BaseException:
            shutil.rmtree(root / folder, ignore_errors=True)  # no row names it: tidy, but harmless if left
            raise
        return int(cur.lastrowid)


def _exists(conn: sqlite3.Connection, record_id: int) -> bool:
    return conn.execute("SELECT 1 FROM ab_records WHERE id = ?", (record_id,)).fetchone() is not None


def pair_stem(record_id: int, variant: str) -> str:
    """The file stem of an approved pair: ``fb<id>-<variant>`` (``fb000042-B``)."""
    return f"fb{record_id:06d}-{variant}"


def approve(record_id: int, variant: str, pair_set: str = "approved", *,
            db_path: str | Path | None = None) -> Path:
    """Make the (input, ``variant``'s output) of record ``record_id`` a training pair in ``pair_set`` and
    return :func:`pairs_folder` (which :func:`trainer.dataset.load_pairs` reads).

    The pair is ``inputs/<stem>.png`` + ``targets/<stem>.png`` with :func:`pair_stem`; files are copied
    byte for byte, atomically, input first. Approving the same pair again is a no-op (missing files are
    restored). Raises :class:`ConfigError` for an unknown record or a bad variant/pair set name,
    :class:`MediaNotFoundError` when the record's frames have gone.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"variant: expected 'A' or 'B', got {variant!r}")
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        raise ConfigError(f"record_id: expected an integer id, got {record_id!r}")
    folder = pairs_folder(pair_set, db_path=db_path)
    stem = pair_stem(record_id, variant)
    with _open(db_path) as conn, db.transaction(conn):  # the write lock also serialises the pair folder
        row = conn.execute("SELECT folder, clip FROM ab_records WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no feedback record {record_id} in {db.db_file(conn)}")
        source = feedback_root(db_path=db_path) / row["folder"]
        approved = {r[0] for r in conn.execute("SELECT stem FROM approvals WHERE pair_set = ?", (pair_set,))}
        _drop_unapproved(folder, approved)
        for src, dst in ((source / INPUT_PNG, folder / "inputs" / f"{stem}.png"),
                         (source / (A_PNG if variant == "A" else B_PNG), folder / "targets" / f"{stem}.png")):
            if not src.is_file():
                raise MediaNotFoundError(f"{src}: frame of feedback record {record_id} is missing")
            if not dst.is_file():
                try:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    atomic.write_bytes(dst, src.read_bytes())
                except OSError as exc:
                    raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from None
        _note_group(folder, stem, row["clip"])
        if stem not in approved:
            conn.execute("INSERT INTO approvals (created, record_id, variant, pair_set, stem) VALUES (?, ?, ?, ?, ?)",
                         (_now(), record_id, variant, pair_set, stem))
    return folder


def _note_group(folder: Path, stem: str, clip: str) -> None:
    """Record in ``groups.json`` (:mod:`trainer.dataset`) which clip the pair came from, so a fine-tune
    validates on clips it did not train on. Atomic; a stem already noted is left alone."""
    path = folder / GROUPS_JSON
    try:
        groups = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        groups = {}  # rebuilt from what is approved from now on; trainer.dataset would refuse a broken file
    groups = groups if isinstance(groups, dict) else {}
    if groups.get(stem) == clip:
        return
    groups[stem] = clip
    try:
        atomic.write_json(path, groups)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _drop_unapproved(folder: Path, approved: set[str]) -> None:
    """Remove our pair files (stems like ``fb000042-A``) with no approval row: left by an approval that
    crashed before committing. Other files (pairs a person dropped in) are never touched."""
    for sub in ("inputs", "targets"):
        if (folder / sub).is_dir():
            for p in (folder / sub).glob("fb*.png"):
                if _STEM.fullmatch(p.stem) and p.stem not in approved:
                    p.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ reading

def _variant(row: sqlite3.Row, side: str, root: Path) -> Variant:
    metrics = row[f"{side}_metrics"]
    return Variant(style=row[f"{side}_style"], params=json.loads(row[f"{side}_params"]), model=row[f"{side}_model"],
                   metrics=None if metrics is None else json.loads(metrics),
                   frame=root / row["folder"] / (A_PNG if side == "a" else B_PNG))


def _record(row: sqlite3.Row, root: Path) -> Record:
    t = None if row["t_start"] is None else (row["t_start"], row["t_end"])
    return Record(id=row["id"], created=row["created"], clip=row["clip"], frame_index=row["frame_index"],
                  time_range=t, a=_variant(row, "a", root), b=_variant(row, "b", root),
                  input_frame=root / row["folder"] / INPUT_PNG, choice=row["choice"], rating=row["rating"],
                  rater=row["rater"], comment=row["comment"], supersedes=row["supersedes"])


def list_records(*, clip: str | None = None, rater: str | None = None, after_id: int = 0,
                 limit: int | None = None, db_path: str | Path | None = None) -> list[Record]:
    """Records in id order (oldest first), optionally only one clip's or one rater's, with id > ``after_id``
    (to page or to poll for new ones), at most ``limit``. Superseded records are included."""
    sql, args = "SELECT * FROM ab_records WHERE id > ?", [after_id]
    for column, value in (("clip", clip), ("rater", rater)):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    root = feedback_root(db_path=db_path)
    with _open(db_path) as conn:
        return [_record(r, root) for r in conn.execute(sql, args)]


def ab_dataset(*, include_superseded: bool = False, db_path: str | Path | None = None) -> list[dict[str, Any]]:
    """The A/B judgements as training rows for the preference model, oldest first.

    Each row is a dict::

        {"id": int, "clip": str, "choice": "A" | "B" | "tie", "rating": int 1..5 | None, "rater": str,
         "a_style": str, "b_style": str, "a_model": str, "b_model": str,   # model "" when not neural
         "a_params": dict, "b_params": dict,                               # style parameters
         "a_metrics": dict[str, float], "b_metrics": dict[str, float]}     # {} when not measured

    Records corrected by a later record (its ``supersedes``) are left out unless ``include_superseded``:
    the correction is what the rater meant.
    """
    rows = []
    with _open(db_path) as conn:
        sql = "SELECT * FROM ab_records r"
        if not include_superseded:
            sql += " WHERE NOT EXISTS (SELECT 1 FROM ab_records c WHERE c.supersedes = r.id)"
        for r in conn.execute(sql + " ORDER BY r.id"):
            row: dict[str, Any] = {"id": r["id"], "clip": r["clip"], "choice": r["choice"], "rating": r["rating"],
                                   "rater": r["rater"]}
            for side in ("a", "b"):
                row[f"{side}_style"] = r[f"{side}_style"]
                row[f"{side}_model"] = r[f"{side}_model"]
                row[f"{side}_params"] = json.loads(r[f"{side}_params"])
                row[f"{side}_metrics"] = json.loads(r[f"{side}_metrics"] or "{}")
            rows.append(row)
    return rows


def export_jsonl(path: str | Path, *, db_path: str | Path | None = None) -> int:
    """Write every record (:meth:`Record.to_json`, id order) as one JSON object per line to ``path``,
    atomically; return the number of records. Raises :class:`OutputError` when ``path`` cannot be written."""
    path = Path(path)
    records = list_records(db_path=db_path)
    text = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in records)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for the JSONL export")
    try:
        atomic.write_bytes(path, text.encode())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return len(records)

