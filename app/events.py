"""Reading a job's progress events and results for display: per-epoch training records, per-frame render
metrics. Defensive by design: a missing or malformed file or field means "nothing to show", not an error."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_EPOCH_TEXT = re.compile(r"epoch\D*(\d+).*?loss\D*([0-9.eE+-]+).*?val\D*([0-9.eE+-]+)", re.IGNORECASE)
_FIELDS = ("epoch", "train_loss", "val_loss")


def _as_epoch(data: Any) -> dict[str, float] | None:
    if isinstance(data, dict):
        for key in ("epoch_record", "record", "data", "epoch"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
        if all(isinstance(data.get(k), (int, float)) for k in _FIELDS):
            return {k: float(data[k]) for k in _FIELDS}
    return None


def epoch_records(events: Iterable[Any]) -> list[dict[str, float]]:
    """``[{"epoch", "train_loss", "val_loss"}, ...]`` from a train job's events (one per epoch, the last
    report of an epoch wins). Reads a dict attribute of the event (``data``/``record``/``extra``), a JSON
    message, or a message like ``epoch 3/20 loss 0.12 val 0.15``."""
    out: dict[int, dict[str, float]] = {}
    for ev in events:
        rec = None
        for attr in ("data", "record", "extra", "payload"):
            rec = rec or _as_epoch(getattr(ev, attr, None))
        msg = str(getattr(ev, "message", "") or "")
        if rec is None and msg.lstrip().startswith("{"):
            try:
                rec = _as_epoch(json.loads(msg))
            except ValueError:
                rec = None
        if rec is None and (m := _EPOCH_TEXT.search(msg)):
            try:
                rec = {"epoch": float(m[1]), "train_loss": float(m[2]), "val_loss": float(m[3])}
            except ValueError:
                rec = None
        if rec is not None:
            out[int(rec["epoch"])] = rec
    return [out[k] for k in sorted(out)]


def _file(path: Any) -> Path | None:
    """``path`` as an existing file, or None (not a path, too long a name, missing, unreadable)."""
    if not isinstance(path, (str, Path)) or not str(path):
        return None
    try:
        return Path(path) if Path(path).is_file() else None
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | Path | None, limit: int = 200_000) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (bad lines skipped); [] when there is no file."""
    file = _file(path)
    if file is None:
        return []
    rows = []
    with open(file) as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def read_json(path: str | Path | None) -> dict[str, Any]:
    """A JSON object from a file; {} when missing or not an object."""
    file = _file(path)
    if file is None:
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def render_metrics(result: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """(per-frame rows of ``metrics.jsonl``, ``summary.json``, why there are none: "" when there are) of a
    finished render's result dict. Both files are in the render's record folder (``result["record"]``): the
    result's ``summary`` is its one-line text, and reading that as a path was why every render showed "no
    metrics recorded"."""
    result = result or {}
    record = result.get("record")
    folder = Path(record) if isinstance(record, str) and record else None
    rows = read_jsonl(folder / "metrics.jsonl") if folder is not None else []
    summary = read_json(folder / "summary.json") if folder is not None else {}
    if rows:
        return rows, summary, ""
    if folder is None:
        why = "this job's result names no render record (a render queued before records were kept)"
    elif not folder.is_dir():
        why = f"its render record {folder} is gone (cleaned up in Settings > Storage, or moved)"
    elif summary.get("measured") is False or not (folder / "metrics.jsonl").is_file():
        why = ("this render took a per-pixel fast path (an identity copy or a LUT-only table), which is not "
               "measured while rendering: `python -m scripts.cli metrics INPUT OUTPUT` measures it")
    else:
        why = f"its metrics file {folder / 'metrics.jsonl'} holds no readable row"
    return rows, summary, why
