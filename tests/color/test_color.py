"""core.color: the .cube reader, the OpenColorIO float path, the baked 8-bit path, transfer functions, `lut` CLI.

OpenColorIO's own ``FileTransform`` is the reference for every real LUT in ../shared/luts (skipped without it);
the malformed and identity LUTs are written by the tests themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PyOpenColorIO as ocio
import pytest

from core import color
from core.color import (
    LUT_READERS,
    TRANSFERS,
    apply_float,
    apply_u8,
    bake_path,
    bake_u8,
    decode_table,
    decode_u8,
    encode_table,
    encode_u8,
    read_lut,
    write_cube,
)
from core.errors import ConfigError, LutError, StudioError
from core.video.stills import read_image, write_image
from scripts.cli import main
from tests.conftest import SHARED

LUTS = SHARED / "luts"
SHARED_CUBES = sorted(LUTS.rglob("*.cube")) if LUTS.is_dir() else []
NO_LUTS = pytest.param(None, marks=pytest.mark.skip(reason=f"no real LUTs at {LUTS} (../shared is absent)"))


def cube_params() -> list:
    if not SHARED_CUBES:
        return [NO_LUTS]
    return [pytest.param(p, id=str(p.relative_to(LUTS))) for p in SHARED_CUBES]


def cube_file(path: Path, header: str, rows: np.ndarray) -> Path:
    """Write a .cube file: ``header`` lines then one row per line (rows already in file order)."""
    body = "\n".join(" ".join(f"{v:.7f}" for v in row) for row in rows)
    path.write_text(f"{header.strip()}\n{body}\n")
    return path


def identity_rows(n: int) -> np.ndarray:
    """A 3D identity table in .cube order (red fastest), (n^3, 3)."""
    v = np.linspace(0.0, 1.0, n)
    b, g, r = np.meshgrid(v, v, v, indexing="ij")
    return np.stack([r, g, b], axis=-1).reshape(-1, 3)


@pytest.fixture
def identity_cube(tmp_path: Path) -> Path:
    return cube_file(tmp_path / "identity.cube", 'TITLE "identity"\nLUT_3D_SIZE 17', identity_rows(17))


@pytest.fixture
def invert_cube(tmp_path: Path) -> Path:
    return cube_file(tmp_path / "invert.cube", "LUT_3D_SIZE 2", 1.0 - identity_rows(2))


# --- the OpenColorIO reference ------------------------------------------------------------------------


def reference_processor(lut: color.Lut, tmp_path: Path) -> ocio.CPUProcessor:
    """OpenColorIO's own reading of the file. OCIO's Resolve parser refuses a TITLE line, which the Resolve
    format allows: for those files the reference reads a copy without it (nothing else changes)."""
    interp = ocio.INTERP_TETRAHEDRAL if lut.lut3d is not None else ocio.INTERP_LINEAR  # 1D: tetrahedral n/a
    config = ocio.Config.CreateRaw()
    try:
        proc = config.getProcessor(ocio.FileTransform(src=str(lut.path), interpolation=interp))
    except ocio.Exception:
        lines = lut.path.read_text().splitlines(keepends=True)
        assert any(ln.upper().startswith("TITLE") for ln in lines), "OCIO refused a file for another reason"
        copy = tmp_path / f"untitled_{lut.path.name}"
        copy.write_text("".join(ln for ln in lines if not ln.upper().startswith("TITLE")))
        proc = config.getProcessor(ocio.FileTransform(src=str(copy), interpolation=interp))
    return proc.getDefaultCPUProcessor()


def run_reference(cpu: ocio.CPUProcessor, rgb: np.ndarray) -> np.ndarray:
    out = np.array(rgb, dtype=np.float32, order="C", copy=True)
    cpu.applyRGB(out)
    return out


def probes(lut: color.Lut) -> np.ndarray:
    """(N, 3) float32 spanning the input domain and a quarter of its span beyond each end, plus random points."""
    lo, hi = np.array(lut.domain_min), np.array(lut.domain_max)
    span = hi - lo
    axes = [np.linspace(lo[c] - span[c] / 4, hi[c] + span[c] / 4, 15) for c in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(7)
    scattered = lo + span * rng.uniform(-0.5, 1.5, size=(3000, 3))
    return np.concatenate([grid, scattered, [lo, hi]]).astype(np.float32)


@pytest.mark.shared
@pytest.mark.parametrize("path", cube_params())
def test_float_matches_ocio_filetransform(path: Path, tmp_path: Path) -> None:
    lut = read_lut(path)
    x = probes(lut)
    before = x.copy()
    ours = apply_float(lut, x)
    np.testing.assert_array_equal(x, before)  # input untouched
    ref = run_reference(reference_processor(lut, tmp_path), x)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-6)
    # values beyond the domain clamp to its edges, as in OCIO
    lo, hi = np.array(lut.domain_min, np.float32), np.array(lut.domain_max, np.float32)
    np.testing.assert_allclose(apply_float(lut, (lo - 1)[None]), apply_float(lut, lo[None]), atol=1e-6)
    np.testing.assert_allclose(apply_float(lut, (hi + 5)[None]), apply_float(lut, hi[None]), atol=1e-6)


@pytest.mark.shared
@pytest.mark.parametrize("path", cube_params())
def test_u8_matches_ocio_filetransform(path: Path, tmp_path: Path) -> None:
    lut = read_lut(path)
    table = bake_u8(lut)
    codes = np.unique(np.r_[np.arange(0, 256, 3), 255]).astype(np.uint8)
    grid = np.stack(np.meshgrid(codes, codes, codes, indexing="ij"), axis=-1)  # (87, 87, 87, 3)
    rgb = np.ascontiguousarray(grid.reshape(-1, codes.size, 3))
    ours = apply_u8(table, rgb).reshape(-1, 3).astype(np.int16)
    ref = run_reference(reference_processor(lut, tmp_path), rgb.reshape(-1, 3) / np.float32(255))
    ref = np.clip(np.floor(ref.astype(np.float64) * 255 + 0.5), 0, 255).astype(np.int16)  # half up, as frames
    assert np.abs(ours - ref).max() <= 1  # off by one only where float32 arithmetic sits on a .5 tie


@pytest.mark.shared
def test_shared_luts_cover_the_dialects() -> None:
    if not SHARED_CUBES:
        pytest.skip(f"no real LUTs at {LUTS}")
    luts = [read_lut(p) for p in SHARED_CUBES]
    assert {lut.kind for lut in luts} == {"1D", "3D", "1D+3D"}
    assert any(lut.domain_min != (0.0, 0.0, 0.0) or lut.domain_max != (1.0, 1.0, 1.0) for lut in luts)
    shaper = read_lut(LUTS / "ocio" / "resolve_1d3d.cube")
    assert (shaper.lut1d.domain_min, shaper.lut1d.domain_max) == ((-1.0,) * 3, (3.0,) * 3)
    assert (shaper.lut3d.domain_min, shaper.lut3d.domain_max) == ((0.0,) * 3, (4.0,) * 3)
    per_channel = read_lut(LUTS / "ocio" / "iridas_1d.cube")
    assert per_channel.lut1d.domain_min == (-2.0, 1.0, 0.0)
    # a 3D-only Resolve file with a 1D input range: ignored, as OCIO does, and said so
    odd = read_lut(LUTS / "colour" / "resolve_cube" / "eotf_sRGB_3D.cube")
    assert odd.kind == "3D" and odd.lut3d.domain_max == (1.0, 1.0, 1.0)
    assert any("LUT_1D_INPUT_RANGE" in n for n in odd.notes)


# --- reading --------------------------------------------------------------------------------------------


def test_smoke_read_identity(identity_cube: Path) -> None:
    lut = read_lut(identity_cube)
    assert (lut.kind, lut.title, lut.lut1d, lut.lut3d.size) == ("3D", "identity", None, 17)
    assert lut.lut3d.table.shape == (17, 17, 17, 3) and lut.lut3d.table.dtype == np.float32
    assert not lut.lut3d.table.flags.writeable
    v = np.linspace(0, 1, 17, dtype=np.float32)
    # indexed [r][g][b] although the file runs red fastest
    np.testing.assert_allclose(lut.lut3d.table[3, 5, 11], [v[3], v[5], v[11]], atol=1e-7)
    assert LUT_READERS[".cube"] is color.read_cube


def test_identity_lut_float_and_u8(identity_cube: Path) -> None:
    lut = read_lut(identity_cube)
    rng = np.random.default_rng(1)
    x = rng.random((40, 30, 3), dtype=np.float32)
    np.testing.assert_allclose(apply_float(lut, x), x, atol=1e-6)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(apply_u8(bake_u8(lut), rgb), rgb)


def test_resolve_shaper_and_keywords_in_any_order(tmp_path: Path) -> None:
    header = ("# shaper first\nLUT_3D_INPUT_RANGE 0 2\nlut_1d_size 2\nTITLE \"both\"\nLUT_3D_SIZE 2\n"
              "LUT_1D_INPUT_RANGE -1 1\n")
    rows = np.concatenate([[[0, 0, 0], [2, 2, 2]], identity_rows(2) * 4])
    lut = read_lut(cube_file(tmp_path / "both.cube", header, rows))
    assert (lut.kind, lut.title, lut.lut1d.size, lut.lut3d.size) == ("1D+3D", "both", 2, 2)
    # x in [-1, 1] -> shaper x + 1 in [0, 2] -> 3D over [0, 2] doubling it
    out = apply_float(lut, np.array([[-1, 0, 1], [-3, 0.5, 9]], np.float32))
    np.testing.assert_allclose(out, [[0, 2, 4], [0, 3, 4]], atol=1e-5)


@pytest.mark.parametrize(
    ("text", "match", "line"),
    [
        pytest.param("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7, r"expected 8 table rows .* found 7", 8, id="truncated"),
        pytest.param("LUT_1D_SIZE 3\n" + "0 0 0\n" * 4, r"expected 3 table rows .* found 4", 5, id="wrong-count"),
        pytest.param("LUT_1D_SIZE 2\n0 0 0\nnan 1 1\n", r"non-finite", 3, id="nan"),
        pytest.param("LUT_1D_SIZE 2\n0 0 0\n1 inf 1\n", r"non-finite .* column 2", 3, id="inf"),
        pytest.param("LUT_3D_SIZE 1\n0 0 0\n", r"LUT_3D_SIZE 1 out of range \(2\.\.256\)", 1, id="size-1"),
        pytest.param("LUT_3D_SIZE 300\n", r"LUT_3D_SIZE 300 out of range", 1, id="size-300"),
        pytest.param("LUT_1D_SIZE 70000\n", r"LUT_1D_SIZE 70000 out of range \(2\.\.65536\)", 1, id="1d-size"),
        pytest.param("LUT_3D_SIZE two\n", r"must be an integer", 1, id="size-text"),
        pytest.param("TITLE \"x\"\nLUT_4D_SIZE 2\n", r"neither a keyword \(TITLE, .*\) nor a row of 3 numbers", 2,
                     id="unknown-keyword"),
        pytest.param("LUT_1D_SIZE 2\n0 0 0\n0 zero 0\n", r"non-numeric table data in column 2", 3, id="non-numeric"),
        pytest.param("LUT_1D_SIZE 2\n0 0 0\nzero 0 0\n", r"non-numeric table data in column 1", 3,
                     id="non-numeric-first"),
        pytest.param("LUT_1D_SIZE 2\n0 0\n1 1 1\n", r"expected 3 numbers .* got 2", 2, id="two-values"),
        pytest.param("LUT_1D_SIZE 2\n0 0 0\nTITLE \"late\"\n1 1 1\n", r"after the table data", 3, id="late-keyword"),
        pytest.param("LUT_1D_SIZE 2\nLUT_1D_SIZE 2\n", r"repeated \(first on line 1\)", 2, id="repeated"),
        pytest.param("LUT_1D_SIZE 2\nDOMAIN_MIN 0 1 0\nDOMAIN_MAX 1 1 1\n0 0 0\n1 1 1\n", r"must be below", 3,
                     id="flat-domain"),
        pytest.param("LUT_1D_SIZE 2\nDOMAIN_MIN 0 0\n", r"DOMAIN_MIN takes 3", 2, id="domain-2-values"),
        pytest.param("LUT_1D_SIZE 2\nDOMAIN_MAX 1 1 1\nLUT_1D_INPUT_RANGE 0 1\n", r"mixed with DOMAIN", 3,
                     id="mixed-dialects"),
        pytest.param("LUT_1D_SIZE 2\nLUT_3D_SIZE 2\nDOMAIN_MAX 2 2 2\n", r"ambiguous", 3, id="domain-1d3d"),
        pytest.param("TITLE \"open\nLUT_1D_SIZE 2\n", r"unterminated quote", 1, id="title-quote"),
        pytest.param("TITLE \"no table\"\n", r"no LUT_1D_SIZE or LUT_3D_SIZE", None, id="no-size"),
        pytest.param("LUT_3D_SIZE 2\n", r"expected 8 table rows .* found 0", None, id="no-rows"),
        pytest.param("", r"empty LUT file", None, id="empty"),
        pytest.param("# only a comment\n\n", r"empty LUT file", None, id="comments-only"),
    ],
)
def test_exception_malformed(tmp_path: Path, text: str, match: str, line: int | None) -> None:
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(LutError, match=match) as info:
        read_lut(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: " if line else f"{path}: "), msg
    assert "\n" not in msg
    for word in ("zero", "two", "lut_4d_size", "open"):  # the file's own words are never quoted
        assert word not in msg.removeprefix(str(path)).lower(), msg


def test_exception_never_shows_the_files_text(tmp_path: Path) -> None:
    """A .cube link to a private file (or any text) names the file and line, never what the line says."""
    secret = tmp_path / "private.txt"
    secret.write_text("root:$6$s3cr3tHash:19000:0:99999:7:::\n")
    link = tmp_path / "look.cube"
    link.symlink_to(secret)
    rows = tmp_path / "rows.cube"
    rows.write_text("LUT_1D_SIZE 2\n0 0 0\n0.5 s3cr3t 1\n")
    sizes = tmp_path / "sizes.cube"
    sizes.write_text("LUT_3D_SIZE s3cr3t\n")
    domain = tmp_path / "domain.cube"
    domain.write_text("LUT_1D_SIZE 2\nDOMAIN_MIN 0 s3cr3t 0\n0 0 0\n1 1 1\n")
    title = tmp_path / "title.cube"
    title.write_text('TITLE "s3cr3t\nLUT_1D_SIZE 2\n')
    counts = tmp_path / "counts.cube"
    counts.write_text("LUT_1D_SIZE 2\n0 0 s3cr3t 1\n")
    for path, line in ((link, 1), (rows, 3), (sizes, 1), (domain, 2), (title, 1), (counts, 2)):
        with pytest.raises(LutError) as info:
            read_lut(path)
        msg = str(info.value)
        tail = msg.removeprefix(f"{path}:{line}: ")
        assert tail != msg and "s3cr3t" not in tail and "root" not in tail, msg


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes(np.random.default_rng(3).integers(0, 256, 2048, dtype=np.uint8)), id="random"),
        pytest.param(b"LUT_1D_SIZE 2\n\x00\x01\x02", id="nul"),
        pytest.param(b"LUT_1D_SIZE 2\n\xff\xfe\xfd 0 0\n", id="bad-utf8"),
    ],
)
def test_exception_binary(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "garbage.cube"
    path.write_bytes(data)
    with pytest.raises(LutError, match=r"binary data") as info:
        read_lut(path)
    assert str(path) in str(info.value)


def test_exception_missing_unreadable_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(LutError, match=r"missing\.cube: cannot read"):
        read_lut(tmp_path / "missing.cube")
    (tmp_path / "folder.cube").mkdir()
    with pytest.raises(LutError, match=r"folder\.cube: cannot read"):
        read_lut(tmp_path / "folder.cube")
    (tmp_path / "look.3dl").write_text("0 1023\n")
    with pytest.raises(LutError, match=r"look\.3dl: unsupported LUT format '\.3dl'"):
        read_lut(tmp_path / "look.3dl")
    assert issubclass(LutError, StudioError) and issubclass(LutError, ValueError)


def test_comments_anywhere_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "crlf.cube"
    path.write_bytes(b"\xef\xbb\xbf# bom and CRLF\r\nLUT_1D_SIZE 2\r\n\r\n0 0 0\r\n# between rows\r\n1 1 1\r\n")
    lut = read_lut(path)
    assert lut.kind == "1D" and lut.lut1d.table.tolist() == [[0, 0, 0], [1, 1, 1]]


def test_write_read_write_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    table = rng.uniform(-0.5, 2.0, (5, 5, 5, 3)).astype(np.float32)
    first = write_cube(tmp_path / "a.cube", table, title="look", domain_min=(-0.1, 0, 0), domain_max=(1, 2, 4))
    lut = read_lut(first)
    assert (lut.kind, lut.title, lut.lut3d.domain_min, lut.lut3d.domain_max) == ("3D", "look", (
        float(np.float32(-0.1)), 0.0, 0.0), (1.0, 2.0, 4.0))
    np.testing.assert_allclose(lut.lut3d.table, table, rtol=1e-7, atol=1e-8)
    second = write_cube(tmp_path / "b.cube", lut.lut3d.table, title=lut.title, domain_min=lut.domain_min,
                        domain_max=lut.domain_max)
    assert second.read_bytes() == first.read_bytes()
    curve = np.linspace(0, 1, 9, dtype=np.float32)[:, None] ** [1.0, 2.0, 0.5]
    one = read_lut(write_cube(tmp_path / "c.cube", curve.astype(np.float32)))
    assert one.kind == "1D" and one.title == "" and np.allclose(one.lut1d.table, curve, atol=1e-7)
    for bad, match in ((np.zeros((4, 4, 3)), "shape"), (np.full((2, 3), np.nan), "NaN"),
                       (np.zeros((300, 300, 300, 3), np.uint8)[:1], "shape")):
        with pytest.raises(LutError, match=match):
            write_cube(tmp_path / "bad.cube", bad)
    assert not (tmp_path / "bad.cube").exists()


# --- float path -----------------------------------------------------------------------------------------


def test_apply_float_shapes_and_input(identity_cube: Path) -> None:
    lut = read_lut(identity_cube)
    rows = np.random.default_rng(2).random((100, 3), dtype=np.float32)
    out = apply_float(lut, rows)
    assert out.shape == (100, 3) and out.dtype == np.float32 and out is not rows
    big = np.random.default_rng(2).random((600, 1000, 3), dtype=np.float32)  # split across threads
    np.testing.assert_allclose(apply_float(lut, big), big, atol=1e-6)
    for bad in (rows.astype(np.float64), rows[:, :2], rows.reshape(-1)):
        with pytest.raises(ConfigError, match=r"expected \(H, W, 3\) or \(N, 3\) float32"):
            apply_float(lut, bad)


def test_processor_cached_per_content(identity_cube: Path) -> None:
    a, b = read_lut(identity_cube), read_lut(identity_cube)
    assert color.processor(a) is color.processor(b)


# --- 8-bit path -----------------------------------------------------------------------------------------


def test_bake_cache_reused_and_keyed_by_content(identity_cube: Path, monkeypatch: pytest.MonkeyPatch,
                                                studio_home: Path) -> None:
    lut = read_lut(identity_cube)
    first = bake_u8(lut)
    path = bake_path(lut)
    assert path.is_file() and path.is_relative_to(studio_home / "cache" / "luts")
    assert first.shape == (256, 256, 256, 3) and first.dtype == np.uint8 and not first.flags.writeable

    def no_bake(*args: object) -> None:
        raise AssertionError("baked again instead of loading the cache")

    monkeypatch.setattr("core.color.bake._bake", no_bake)
    second = bake_u8(read_lut(identity_cube))
    assert isinstance(second, np.memmap)
    np.testing.assert_array_equal(second, first)
    monkeypatch.undo()

    assert bake_path(lut, "other") != path
    text = identity_cube.read_text().replace("1.0000000 1.0000000 1.0000000", "1.0000000 1.0000000 0.5000000")
    identity_cube.write_text(text)
    edited = read_lut(identity_cube)
    assert edited.sha256 != lut.sha256 and bake_path(edited) != path
    assert tuple(bake_u8(edited)[255, 255, 255]) == (255, 255, 128)


def test_bake_rebuilds_a_damaged_cache(identity_cube: Path) -> None:
    lut = read_lut(identity_cube)
    bake_path(lut).parent.mkdir(parents=True)
    bake_path(lut).write_bytes(b"not an npy file")
    assert bake_u8(lut)[10, 20, 30].tolist() == [10, 20, 30]


def test_bake_pre_post(identity_cube: Path) -> None:
    lut = read_lut(identity_cube)
    with pytest.raises(ConfigError, match=r"key_extra"):
        bake_u8(lut, pre=TRANSFERS["srgb"].to_linear)
    srgb = TRANSFERS["srgb"]
    table = bake_u8(lut, "srgb-decode/encode", pre=srgb.to_linear, post=srgb.from_linear)
    codes = np.arange(256)
    assert np.abs(table[codes, codes, codes].astype(int) - codes[:, None]).max() <= 1
    darken = bake_u8(lut, "half", post=lambda rows: rows * 0.5)
    assert darken[200, 100, 0].tolist() == [100, 50, 0]
    assert bake_path(lut, "half") != bake_path(lut, "srgb-decode/encode")


def test_bake_curves_without_lut() -> None:
    table = bake_u8(None, "invert", post=lambda rows: 1.0 - rows)
    assert table[0, 128, 255].tolist() == [255, 127, 0]
    with pytest.raises(ConfigError, match=r"nothing to bake"):
        bake_u8(None)


def test_apply_u8_matches_naive_lookup(invert_cube: Path) -> None:
    table = bake_u8(read_lut(invert_cube))
    rgb = np.random.default_rng(4).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    before = rgb.copy()
    out = apply_u8(table, rgb)
    np.testing.assert_array_equal(rgb, before)
    np.testing.assert_array_equal(out, 255 - rgb)
    view = rgb[::2, 1::3]  # not contiguous
    np.testing.assert_array_equal(apply_u8(table, view), table[view[..., 0], view[..., 1], view[..., 2]])
    assert out.flags.c_contiguous and out.dtype == np.uint8
    with pytest.raises(ConfigError, match=r"\(256, 256, 256, 3\) uint8 table"):
        apply_u8(table[:10], rgb)


def test_packed_lookup_equals_apply_u8(invert_cube: Path, identity_cube: Path) -> None:
    from core.color import lookup_rgbx, lookup_u8, pack_table, packed_table

    table = bake_u8(read_lut(invert_cube))
    rgb = np.random.default_rng(5).integers(0, 256, (31, 47, 3), dtype=np.uint8)
    before = rgb.copy()
    packed = pack_table(table)
    np.testing.assert_array_equal(lookup_u8(packed, rgb), apply_u8(table, rgb))
    np.testing.assert_array_equal(rgb, before)
    view = rgb[::2, 1::3]
    np.testing.assert_array_equal(lookup_u8(packed, view), apply_u8(table, view))
    for odd in (rgb[:1, :1], rgb[:1, :2], np.full((2, 3, 3), 255, np.uint8)):  # the last pixel is read apart
        np.testing.assert_array_equal(lookup_u8(packed, odd), apply_u8(table, odd))
    frozen = rgb.copy()
    frozen.setflags(write=False)
    np.testing.assert_array_equal(lookup_u8(packed, frozen), apply_u8(table, frozen))
    assert packed_table(invert_cube, load=False) is None  # bakes into the cache without loading the table
    x = np.random.default_rng(6).integers(0, 256, (31, 47), dtype=np.uint8)  # the 4th byte is ignored
    rgbx = np.dstack([rgb, x])
    out = lookup_rgbx(packed, rgbx)
    assert out.shape == rgbx.shape and out.dtype == np.uint8 and not out[..., 3].any()
    np.testing.assert_array_equal(out[..., :3], apply_u8(table, rgb))
    np.testing.assert_array_equal(rgbx[..., :3], before)
    with pytest.raises(ConfigError, match=r"expected \(H, W, 4\) uint8 pixels, got \(31, 47, 3\)"):
        lookup_rgbx(packed, rgb)
    cached = packed_table(invert_cube)
    np.testing.assert_array_equal(cached, packed)
    again = packed_table(invert_cube)  # from the disk cache now
    np.testing.assert_array_equal(again, packed)
    assert not np.array_equal(packed_table(identity_cube), packed)


# --- transfer functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TRANSFERS))
def test_transfer_tables_round_trip(name: str) -> None:
    dec, enc = decode_table(name), encode_table(name)
    assert dec.shape == (256,) and dec.dtype == np.float32 and enc.shape == (4096,) and enc.dtype == np.uint8
    assert dec[0] == 0 and dec[255] == pytest.approx(1) and enc[0] == 0 and enc[4095] == 255
    assert (np.diff(dec) > 0).all() and (np.diff(enc.astype(int)) >= 0).all()
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(encode_u8(name, decode_u8(name, codes)), codes)
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    t = TRANSFERS[name]
    np.testing.assert_allclose(t.from_linear(t.to_linear(x)), x, atol=2e-6)


@pytest.mark.parametrize("name", ["srgb", "rec709", "linear"])
def test_encode_table_alone_round_trips(name: str) -> None:
    index = np.rint(decode_table(name) * 4095).astype(int)
    np.testing.assert_array_equal(encode_table(name)[index], np.arange(256))


def test_transfer_values_and_errors() -> None:
    assert TRANSFERS["srgb"].to_linear(np.float32(0.5)) == pytest.approx(0.214041, abs=1e-6)
    assert TRANSFERS["rec709"].from_linear(np.float32(0.18)) == pytest.approx(0.408848, abs=1e-5)  # precise constants
    assert TRANSFERS["gamma2.2"].to_linear(np.float32(-0.5)) < 0  # sign kept
    # pure gammas: the dark codes the 4096-entry table merges still come back exactly
    assert encode_u8("gamma2.4", decode_u8("gamma2.4", np.array([1, 2, 3, 5, 9], np.uint8))).tolist() == [1, 2, 3, 5, 9]
    with pytest.raises(ConfigError, match=r"unknown transfer function 'pq'"):
        decode_table("pq")


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_lut_check(identity_cube: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lut", "check", str(identity_cube)]) == 0
    out = capsys.readouterr().out
    assert "kind: 3D" in out and "3D: size 17, domain [0, 1]" in out and "title: identity" in out
    assert "identity-like: yes" in out


@pytest.mark.shared
def test_cli_lut_check_shared_shaper(capsys: pytest.CaptureFixture[str]) -> None:
    path = LUTS / "ocio" / "resolve_1d3d.cube"
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared is absent)")
    assert main(["lut", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kind: 1D+3D" in out and "1D: size 6, domain [-1, 3]" in out and "identity-like: no" in out


def test_cli_lut_apply(invert_cube: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    src = write_image(tmp_path / "in.png", rgb)
    dst = tmp_path / "out.png"
    assert main(["lut", "apply", str(invert_cube), str(src), "-o", str(dst)]) == 0
    np.testing.assert_array_equal(read_image(dst), 255 - rgb)
    assert f"wrote {dst}" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["check", "apply"])
def test_cli_lut_bad_file(tmp_path: Path, action: str, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.cube"
    bad.write_text("LUT_3D_SIZE 2\n0 0 0\n")
    extra = [str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png")] if action == "apply" else []
    assert main(["lut", action, str(bad), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"{bad}:2:" in err[0]
    assert not (tmp_path / "out.png").exists()
