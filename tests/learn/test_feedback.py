"""core.learn.feedback: record/list/export, strict validation, append-only, approvals the trainer loads, and
no lost or broken record with concurrent writers or a writer SIGKILLed mid-stream."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from core import db
from core.errors import ConfigError, MediaNotFoundError
from core.learn import feedback
from core.learn.feedback import Variant
from core.video.stills import read_image

SIZE = (24, 32)  # H, W: small, so the process tests stay light


def frames(tag: str, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, input) for record ``i`` of writer ``tag``: seeded, so a reader can check every pixel."""
    rng = np.random.default_rng([sum(map(ord, tag)), i])
    a, b, x = (rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(3))
    return a, b, x


def record(tag: str, i: int, db_path: str | Path | None = None, **kw) -> int:
    a, b, x = frames(tag, i)
    args = {"choice": "A", "rater": "ana", "rating": 4, "comment": "", **kw}
    return feedback.record_ab(f"{tag}-{i}.mp4", i, Variant("cartoon", {"n_colors": 6}),
                              Variant("neural", {"strength": 0.5}, "mosaic@2", {"flicker": 0.1, "ssim": 0.8}),
                              a, b, x, db_path=db_path, **args)


def check_store(db_path: Path) -> list[feedback.Record]:
    """Every committed record intact: integrity_check ok, every file present with the pixels written."""
    conn = db.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    records = feedback.list_records(db_path=db_path)
    for r in records:
        tag, i = r.clip.removesuffix(".mp4").rsplit("-", 1)
        a, b, x = frames(tag, int(i))
        assert r.frame_index == int(i)
        np.testing.assert_array_equal(read_image(r.a.frame), a)
        np.testing.assert_array_equal(read_image(r.b.frame), b)
        np.testing.assert_array_equal(read_image(r.input_frame), x)
    return records


# ------------------------------------------------------------------------------------------------ basics

def test_smoke(studio_home: Path) -> None:
    rid = record("w", 0, comment="B flickers")
    [r] = feedback.list_records()
    assert r.id == rid and r.clip == "w-0.mp4" and r.choice == "A" and r.rating == 4 and r.rater == "ana"
    assert r.comment == "B flickers" and r.time_range is None and r.supersedes is None
    assert r.a == Variant("cartoon", {"n_colors": 6}, "", None, r.a.frame)
    assert r.b.model == "mosaic@2" and r.b.metrics == {"flicker": 0.1, "ssim": 0.8}
    assert r.input_frame.parent.parent == studio_home / "feedback"
    check_store(studio_home / "studio.db")


def test_time_range_and_filters(studio_home: Path) -> None:
    a, b, x = frames("t", 0)
    rid = feedback.record_ab("t.mp4", (1.5, 3.0), Variant("pencil"), Variant("pencil", {"tint": 0.2}), a, b, x,
                             choice="tie", rater="bo")
    record("w", 1)
    [r] = feedback.list_records(rater="bo")
    assert (r.id, r.time_range, r.frame_index, r.rating) == (rid, (1.5, 3.0), None, None)
    assert [r.clip for r in feedback.list_records(after_id=rid)] == ["w-1.mp4"]
    assert len(feedback.list_records(clip="w-1.mp4")) == 1 and len(feedback.list_records(limit=1)) == 1


def test_does_not_mutate_input() -> None:
    a, b, x = frames("m", 0)
    before = [a.copy(), b.copy(), x.copy()]
    params = {"n_colors": 6}
    feedback.record_ab("m.mp4", 0, Variant("cartoon", params), Variant("cartoon"), a, b, x, choice="B", rater="r")
    for arr, orig in zip((a, b, x), before, strict=True):
        np.testing.assert_array_equal(arr, orig)
    assert params == {"n_colors": 6}


def test_export_round_trip(tmp_path: Path) -> None:
    ids = [record("e", i, rating=None if i else 5) for i in range(3)]
    out = tmp_path / "fb.jsonl"
    assert feedback.export_jsonl(out) == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in lines] == ids
    assert lines == [r.to_json() for r in feedback.list_records()]
    assert lines[0]["rating"] == 5 and lines[1]["rating"] is None
    assert lines[0]["b"]["metrics"] == {"flicker": 0.1, "ssim": 0.8}
    assert Path(lines[2]["a"]["frame"]).is_file()
    assert not list(tmp_path.glob(".*"))  # no temp file left beside it


def test_ab_dataset_shape() -> None:
    first = record("d", 0, choice="B")
    a, b, x = frames("d", 0)
    fixed = feedback.record_ab("d-0.mp4", 0, Variant("cartoon", {"n_colors": 6}), Variant("neural"), a, b, x,
                               choice="A", rater="ana", supersedes=first)
    rows = feedback.ab_dataset()
    assert [r["id"] for r in rows] == [fixed]  # the correction replaces what it supersedes
    assert rows[0] == {"id": fixed, "clip": "d-0.mp4", "choice": "A", "rating": None, "rater": "ana",
                       "a_style": "cartoon", "b_style": "neural", "a_model": "", "b_model": "",
                       "a_params": {"n_colors": 6}, "b_params": {}, "a_metrics": {}, "b_metrics": {}}
    every = feedback.ab_dataset(include_superseded=True)
    assert [r["id"] for r in every] == [first, fixed]
    assert every[0]["b_metrics"] == {"flicker": 0.1, "ssim": 0.8} and every[0]["choice"] == "B"


def test_append_only(studio_home: Path) -> None:
    record("w", 0)
    conn = db.connect()
    for sql in ("UPDATE ab_records SET choice = 'B'", "DELETE FROM ab_records"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()
    assert feedback.list_records()[0].choice == "A"


# ------------------------------------------------------------------------------------------------ checks

def _bad(**kw):
    a, b, x = frames("x", 0)
    args = {"clip": "c.mp4", "at": 0, "a": Variant("cartoon"), "b": Variant("pencil"), "a_rgb": a, "b_rgb": b,
            "input_rgb": x, "choice": "A", "rater": "ana", **kw}
    return args


@pytest.mark.parametrize(("kw", "match"), [
    ({"clip": ""}, "clip"),
    ({"at": -1}, "at"),
    ({"at": (3.0, 1.0)}, "at"),
    ({"at": (0.0, float("nan"))}, "at"),
    ({"at": True}, "at"),
    ({"a": Variant("no such style!")}, r"a\.style"),
    ({"b": Variant("cartoon", {1: 2})}, r"b\.params"),
    ({"b": Variant("cartoon", {"f": object()})}, r"b\.params"),
    ({"a": Variant("cartoon", model="mosaic")}, r"a\.model"),
    ({"a": Variant("cartoon", metrics={"ssim": float("inf")})}, r"a\.metrics\['ssim'\]"),
    ({"b": Variant("cartoon", metrics={"ssim": "high"})}, r"b\.metrics"),
    ({"a": Variant("cartoon", frame=Path("x.png"))}, r"a\.frame"),
    ({"a": "cartoon"}, "a: expected a Variant"),
    ({"a_rgb": np.zeros((4, 4, 3), np.float32)}, r"a_rgb: expected \(H, W, 3\) uint8"),
    ({"input_rgb": np.zeros((4, 4), np.uint8)}, "input_rgb"),
    ({"b_rgb": np.zeros((8, 8, 3), np.uint8)}, "share one size"),
    ({"choice": "a"}, "choice"),
    ({"rating": 6}, "rating"),
    ({"rating": True}, "rating"),
    ({"rater": " "}, "rater"),
    ({"comment": None}, "comment"),
    ({"supersedes": "1"}, "supersedes"),
    ({"supersedes": 99}, "no feedback record 99"),
])
def test_exception(kw: dict, match: str, studio_home: Path) -> None:
    args = _bad(**kw)
    with pytest.raises(ConfigError, match=match):
        feedback.record_ab(args.pop("clip"), args.pop("at"), args.pop("a"), args.pop("b"), args.pop("a_rgb"),
                           args.pop("b_rgb"), args.pop("input_rgb"), **args)
    assert not any((studio_home / "feedback").glob("*/*.png"))  # nothing written for a refused record
    if (studio_home / "studio.db").exists():
        assert feedback.list_records() == []


# ------------------------------------------------------------------------------------------------ approvals

def test_approve_loads_in_trainer() -> None:
    from trainer.dataset import load_pairs

    r1, r2 = record("p", 0), record("p", 1)
    folder = feedback.approve(r1, "A")
    assert feedback.approve(r2, "B") == folder == feedback.pairs_folder("approved")
    assert feedback.approve(r2, "B") == folder  # again: a no-op
    pairs = load_pairs(folder)
    assert [p.stem for p in pairs] == ["fb000001-A", "fb000002-B"]
    assert [p.group for p in pairs] == ["p-0.mp4", "p-1.mp4"]  # the clip rated: the fine-tune validates by clip
    a0, _, x0 = frames("p", 0)
    _, b1, x1 = frames("p", 1)
    np.testing.assert_array_equal(pairs[0].input, x0)
    np.testing.assert_array_equal(pairs[0].target, a0)
    np.testing.assert_array_equal(pairs[1].input, x1)
    np.testing.assert_array_equal(pairs[1].target, b1)
    conn = db.connect()
    assert conn.execute("SELECT count(*) FROM approvals").fetchone()[0] == 2
    conn.close()


def test_approve_sweeps_uncommitted(studio_home: Path) -> None:
    """Files of an approval that crashed before its row committed are removed; a person's own pairs stay."""
    rid = record("s", 0)
    folder = feedback.pairs_folder("mine")
    (folder / "inputs").mkdir(parents=True)
    (folder / "targets").mkdir()
    (folder / "inputs" / "fb000009-A.png").write_bytes(b"half an approval")  # input written, then a crash
    for sub in ("inputs", "targets"):
        (folder / sub / "own.png").write_bytes((studio_home / "feedback").glob("*/input.png").__next__().read_bytes())
    feedback.approve(rid, "B", "mine")
    assert sorted(p.name for p in (folder / "inputs").iterdir()) == ["fb000001-B.png", "own.png"]


def test_approve_exception() -> None:
    rid = record("x", 0)
    with pytest.raises(ConfigError, match="variant"):
        feedback.approve(rid, "C")
    with pytest.raises(ConfigError, match="no feedback record 5"):
        feedback.approve(5, "A")
    with pytest.raises(ConfigError, match="pair_set"):
        feedback.approve(rid, "A", "../escape")
    for f in feedback.list_records()[0].input_frame.parent.iterdir():
        f.unlink()
    with pytest.raises(MediaNotFoundError, match=r"input\.png"):
        feedback.approve(rid, "A")


# ------------------------------------------------------------------------------------------------ processes

def _writer(db_path: str, tag: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        record(tag, i, db_path=db_path)


def test_concurrent_writers(tmp_path: Path) -> None:
    n, path = 15, tmp_path / "studio.db"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), tag, n)) for tag in ("left", "right")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    records = check_store(path)
    assert len(records) == 2 * n and len({r.id for r in records}) == 2 * n
    assert sorted(r.clip for r in records) == sorted(f"{t}-{i}.mp4" for t in ("left", "right") for i in range(n))


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    conn = db.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM ab_records").fetchone()[0]
    except sqlite3.OperationalError:  # table not made yet
        return 0
    finally:
        conn.close()


def test_sigkill_mid_write(tmp_path: Path) -> None:
    """A writer killed at arbitrary points of a stream of writes: nothing committed is lost or broken."""
    path = tmp_path / "studio.db"
    ctx = mp.get_context("spawn")
    start = 0
    for round_, wait_for in enumerate((3, 7)):
        p = ctx.Process(target=_writer, args=(str(path), f"k{round_}", 10_000))
        p.start()
        deadline = time.monotonic() + 60
        while _count(path) < start + wait_for and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.003 * round_)  # land somewhere else within a write
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
        records = check_store(path)
        assert len(records) >= start + wait_for
        assert [r.id for r in records] == list(range(1, len(records) + 1))
        folders = list((tmp_path / "feedback").iterdir())
        assert len(folders) - len(records) <= round_ + 1  # at worst one orphan folder per kill, no row without one
        start = len(records)
    rid = record("after", 0, db_path=path)  # a new writer carries on
    assert rid == start + 1
    assert len(check_store(path)) == start + 1


# ------------------------------------------------------------------------------------------------ CLI

def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.cli import main

    rid = record("c", 0)
    assert main(["feedback", "list"]) == 0
    assert "c-0.mp4" in capsys.readouterr().out
    assert main(["feedback", "export", str(tmp_path / "x.jsonl")]) == 0
    assert json.loads((tmp_path / "x.jsonl").read_text())["id"] == rid
    assert main(["feedback", "approve", str(rid), "B"]) == 0
    assert str(feedback.pairs_folder()) in capsys.readouterr().out
    assert main(["feedback", "approve", "77", "A"]) == 2
    assert "no feedback record 77" in capsys.readouterr().err
