"""A strict reader for ``.cube`` LUT files, both dialects.

* Iridas/Adobe: ``TITLE``, ``LUT_1D_SIZE`` or ``LUT_3D_SIZE``, ``DOMAIN_MIN``/``DOMAIN_MAX`` (per channel).
* Resolve: ``LUT_1D_SIZE`` and/or ``LUT_3D_SIZE`` with ``LUT_1D_INPUT_RANGE``/``LUT_3D_INPUT_RANGE`` (one
  min/max for all channels); with both sizes the 1D shaper's rows come first, then the 3D table's.

Keywords (case-insensitive, as OpenColorIO reads them) come in any order before the data; ``#`` comments and
blank lines may appear anywhere. Data rows are three numbers, red changing fastest in 3D tables. Every problem
raises :class:`~core.errors.LutError` naming the file and, where there is one, the line and column, but never
quoting the file's text: the path may be a link to any file (a private one, a binary), and its content must not
reach a terminal or a job's error record.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from core import atomic
from core.errors import LutError, OutputError

from .lut import SIZE_1D, SIZE_3D, UNIT_MAX, UNIT_MIN, Lut, Lut1D, Lut3D, Triple, frozen_table

#: keyword -> number of values it takes (None: free text).
_KEYWORDS: dict[str, int | None] = {
    "TITLE": None,
    "LUT_1D_SIZE": 1,
    "LUT_3D_SIZE": 1,
    "DOMAIN_MIN": 3,
    "DOMAIN_MAX": 3,
    "LUT_1D_INPUT_RANGE": 2,
    "LUT_3D_INPUT_RANGE": 2,
}


def read_lut_bytes(path: Path) -> bytes:
    """The file's bytes; a missing, unreadable or empty file raises :class:`LutError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LutError(f"{path}: cannot read the LUT file ({exc.strerror or exc})") from None
    if not raw.strip():
        raise LutError(f"{path}: empty LUT file")
    return raw


def decode_text(path: Path, raw: bytes) -> str:
    """Decode a text LUT file; NUL bytes or invalid UTF-8 mean binary data, not a LUT."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raise LutError(f"{path}: binary data, not a text LUT (NUL byte at offset {nul})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LutError(f"{path}: binary data, not a text LUT (invalid UTF-8 at offset {exc.start})") from None


def read_cube(path: str | Path) -> Lut:
    """Read a ``.cube`` file into a :class:`Lut` (1D, 3D or Resolve 1D shaper + 3D).

    Raises :class:`LutError` for a missing/unreadable/empty/binary file, an unknown, repeated or misplaced
    keyword, a size outside 2..65536 (1D) or 2..256 (3D), a domain with min >= max, a row that is not three
    finite numbers, or a row count that does not match the sizes.
    """
    path = Path(path)
    raw = read_lut_bytes(path)
    text = decode_text(path, raw)

    header: dict[str, tuple[int, list[str]]] = {}  # keyword -> (line number, values)
    title = ""
    rows: list[str] = []  # table lines, stripped
    row_lines: list[int] = []
    for lineno, line in enumerate(text.split("\n"), 1):  # CRLF: strip() drops the \r
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        tokens = s.split()
        if _is_number(tokens[0]):
            if len(tokens) != 3:
                raise LutError(f"{path}:{lineno}: expected 3 numbers in a table row, got {len(tokens)} values")
            rows.append(s)
            row_lines.append(lineno)
            continue
        key = tokens[0].upper()
        if key not in _KEYWORDS:
            if rows:
                raise LutError(f"{path}:{lineno}: non-numeric table data in column 1")
            raise LutError(f"{path}:{lineno}: neither a keyword ({', '.join(_KEYWORDS)}) nor a row of 3 numbers")
        if rows:
            raise LutError(f"{path}:{lineno}: keyword {key} after the table data (keywords must come first)")
        if key in header:
            raise LutError(f"{path}:{lineno}: {key} repeated (first on line {header[key][0]})")
        if key == "TITLE":
            title = _parse_title(path, lineno, s[len(tokens[0]):].strip())
            header[key] = (lineno, [])
            continue
        if len(tokens) - 1 != _KEYWORDS[key]:
            raise LutError(f"{path}:{lineno}: {key} takes {_KEYWORDS[key]} value(s), got {len(tokens) - 1}")
        header[key] = (lineno, tokens[1:])

    if not rows and not header:
        raise LutError(f"{path}: empty LUT file (only comments and blank lines)")
    size1 = _size(path, header, "LUT_1D_SIZE", SIZE_1D)
    size3 = _size(path, header, "LUT_3D_SIZE", SIZE_3D)
    if not size1 and not size3:
        raise LutError(f"{path}: no LUT_1D_SIZE or LUT_3D_SIZE line")

    dom1, dom3, notes = _domains(path, header, bool(size1), bool(size3))
    expected = size1 + size3**3
    if len(rows) != expected:
        parts = " + ".join(p for p in (f"{size1} (1D)" if size1 else "", f"{size3}^3 (3D)" if size3 else "") if p)
        where = f"{path}:{row_lines[-1]}" if rows else str(path)
        raise LutError(f"{where}: expected {expected} table rows ({parts}), found {len(rows)}")
    values = _parse_rows(path, rows, row_lines)
    lut1d = lut3d = None
    if size1:
        lut1d = Lut1D(size1, *dom1, table=frozen_table(values[:size1], (size1, 3)))
    if size3:
        # .cube rows run red fastest: reshaped C-order that is [b][g][r]; we index [r][g][b].
        cube = values[size1:].reshape(size3, size3, size3, 3).transpose(2, 1, 0, 3)
        lut3d = Lut3D(size3, *dom3, table=frozen_table(cube, (size3, size3, size3, 3)))
    kind = "1D+3D" if size1 and size3 else "1D" if size1 else "3D"
    return Lut(path=path, title=title, kind=kind, lut1d=lut1d, lut3d=lut3d,
               sha256=hashlib.sha256(raw).hexdigest(), notes=tuple(notes))


def write_cube(
    path: str | Path,
    table: np.ndarray,
    *,
    title: str = "",
    domain_min: Triple = UNIT_MIN,
    domain_max: Triple = UNIT_MAX,
) -> Path:
    """Write a 1D (N, 3) or 3D (N, N, N, 3) [r][g][b] table as an Iridas/Adobe ``.cube`` file, atomically.

    Values are written with 8 significant digits (float32 survives the round trip within 1e-7 relative).
    ``DOMAIN_MIN``/``DOMAIN_MAX`` are written only when not the unit cube. Raises :class:`LutError` for a
    table :func:`read_cube` would refuse (shape, size, non-finite values, domain order, a quote in the title).
    """
    path = Path(path)
    table = np.asarray(table)
    is3d = table.ndim == 4
    n = table.shape[0] if table.ndim else 0
    shape_ok = table.shape == ((n, n, n, 3) if is3d else (n, 3))
    lo, hi = SIZE_3D if is3d else SIZE_1D
    if not shape_ok or not lo <= n <= hi:
        raise LutError(f"{path}: cannot write a table of shape {table.shape} (expected (N, 3) with N in "
                       f"{SIZE_1D[0]}..{SIZE_1D[1]} or (N, N, N, 3) with N in {SIZE_3D[0]}..{SIZE_3D[1]})")
    if not np.isfinite(table).all():
        raise LutError(f"{path}: cannot write a table with NaN or inf values")
    if not all(a < b for a, b in zip(domain_min, domain_max, strict=True)):
        raise LutError(f"{path}: domain min {list(domain_min)} must be below max {list(domain_max)}")
    if '"' in title or "\n" in title:
        raise LutError(f"{path}: a title cannot hold quotes or newlines: {title!r}")
    rows = table.transpose(2, 1, 0, 3).reshape(-1, 3) if is3d else table  # .cube order: red fastest
    lines = [f'TITLE "{title}"'] if title else []
    lines.append(f"LUT_{'3' if is3d else '1'}D_SIZE {n}")
    if (tuple(domain_min), tuple(domain_max)) != (UNIT_MIN, UNIT_MAX):
        lines.append("DOMAIN_MIN " + " ".join(f"{v:.8g}" for v in domain_min))
        lines.append("DOMAIN_MAX " + " ".join(f"{v:.8g}" for v in domain_max))
    lines.extend(f"{r:.8g} {g:.8g} {b:.8g}" for r, g, b in rows.tolist())
    try:
        atomic.write_bytes(path, ("\n".join(lines) + "\n").encode())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse_title(path: Path, lineno: int, rest: str) -> str:
    if rest.startswith('"'):
        if len(rest) < 2 or not rest.endswith('"'):
            raise LutError(f"{path}:{lineno}: TITLE has an unterminated quote")
        return rest[1:-1]
    return rest


def _size(path: Path, header: dict[str, tuple[int, list[str]]], key: str, bounds: tuple[int, int]) -> int:
    if key not in header:
        return 0
    lineno, (value,) = header[key]
    try:
        size = int(value)
    except ValueError:
        raise LutError(f"{path}:{lineno}: {key} must be an integer") from None
    lo, hi = bounds
    if not lo <= size <= hi:
        raise LutError(f"{path}:{lineno}: {key} {size} out of range ({lo}..{hi})")
    return size


def _parse_rows(path: Path, rows: list[str], row_lines: list[int]) -> np.ndarray:
    """(len(rows), 3) float64 parsed in C; the first non-numeric or non-finite value is reported with its line."""
    try:
        values = np.loadtxt(io.StringIO("\n".join(rows)), dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        for line, lineno in zip(rows, row_lines, strict=True):
            for column, t in enumerate(line.split(), 1):
                if not _is_number(t):
                    raise LutError(f"{path}:{lineno}: non-numeric table data in column {column}") from None
        raise
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        i = int(bad[0])
        column = int(np.flatnonzero(~np.isfinite(values[i]))[0]) + 1
        raise LutError(f"{path}:{row_lines[i]}: non-finite value (NaN or inf) in table column {column}")
    return values


def _floats(path: Path, header: dict[str, tuple[int, list[str]]], key: str) -> list[float]:
    lineno, tokens = header[key]
    try:
        vals = [float(t) for t in tokens]
    except ValueError:
        raise LutError(f"{path}:{lineno}: {key} values must be numbers") from None
    if not np.isfinite(vals).all():
        raise LutError(f"{path}:{lineno}: {key} values must be finite (no NaN or inf)")
    # OpenColorIO keeps domains as float32 and derives its scale from those: so do we, to match it bit for bit.
    return [float(np.float32(v)) for v in vals]


def _domains(
    path: Path, header: dict[str, tuple[int, list[str]]], has1: bool, has3: bool
) -> tuple[tuple[Triple, Triple], tuple[Triple, Triple], list[str]]:
    """The (min, max) domains of the 1D and 3D parts, and notes on keywords that had no effect."""
    has_domain = "DOMAIN_MIN" in header or "DOMAIN_MAX" in header
    ranges = [k for k in ("LUT_1D_INPUT_RANGE", "LUT_3D_INPUT_RANGE") if k in header]
    if has_domain and ranges:
        raise LutError(f"{path}:{header[ranges[0]][0]}: {ranges[0]} (Resolve) mixed with DOMAIN_MIN/MAX (Iridas)")
    if has_domain and has1 and has3:
        key = "DOMAIN_MIN" if "DOMAIN_MIN" in header else "DOMAIN_MAX"
        raise LutError(f"{path}:{header[key][0]}: {key} is ambiguous in a file with both a 1D and a 3D table "
                       "(use LUT_1D_INPUT_RANGE / LUT_3D_INPUT_RANGE)")
    unit = (UNIT_MIN, UNIT_MAX)
    if has_domain:
        lo = tuple(_floats(path, header, "DOMAIN_MIN")) if "DOMAIN_MIN" in header else UNIT_MIN
        hi = tuple(_floats(path, header, "DOMAIN_MAX")) if "DOMAIN_MAX" in header else UNIT_MAX
        _check_order(path, header, lo, hi, "DOMAIN_MAX" if "DOMAIN_MAX" in header else "DOMAIN_MIN")
        return (lo, hi), (lo, hi), []  # type: ignore[return-value]
    notes = []
    doms = []
    for key, present in (("LUT_1D_INPUT_RANGE", has1), ("LUT_3D_INPUT_RANGE", has3)):
        if key not in header:
            doms.append(unit)
            continue
        if not present:
            notes.append(f"{key} on line {header[key][0]} ignored: the file has no {key[4:6]} table "
                         "(as OpenColorIO does)")
            doms.append(unit)
            continue
        a, b = _floats(path, header, key)
        _check_order(path, header, (a, a, a), (b, b, b), key)
        doms.append(((a, a, a), (b, b, b)))
    return doms[0], doms[1], notes


def _check_order(path: Path, header: dict[str, tuple[int, list[str]]], lo: tuple, hi: tuple, key: str) -> None:
    if not all(a < b for a, b in zip(lo, hi, strict=True)):
        raise LutError(f"{path}:{header[key][0]}: domain min {list(lo)} must be below max {list(hi)} in every channel")
