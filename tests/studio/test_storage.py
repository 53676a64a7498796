"""core.studio.storage: settings round trip, uploads by content hash, media listing, the disk guard, clean-up."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from core import disk
from core.errors import ConfigError, DiskFullError, OutputError
from core.studio import storage


def test_settings_round_trip(studio_home: Path) -> None:
    assert storage.load_settings() == storage.StudioSettings()
    s = storage.StudioSettings(media_folders=("samples", "/data/clips"), retention=storage.Retention(uploads=3.0),
                               min_free_gb=5.0)
    path = storage.save_settings(s)
    assert path == studio_home / "settings.yaml"
    assert storage.load_settings() == s


def test_settings_exception(studio_home: Path) -> None:
    studio_home.mkdir(parents=True)
    (studio_home / "settings.yaml").write_text("min_free_gb: -1\n")
    with pytest.raises(ConfigError, match="min_free_gb"):
        storage.load_settings()
    (studio_home / "settings.yaml").write_text("colour: red\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        storage.load_settings()
    (studio_home / "settings.yaml").write_text("decode: gpu\n")
    with pytest.raises(ConfigError, match="decode: 'gpu' is not one of cpu, cuda"):
        storage.load_settings()


def test_store_upload_keeps_the_users_name_safely(studio_home: Path) -> None:
    """The name the user gave survives (every caption and output name shows it), cleaned: last path component,
    no leading dot, no shell-special characters; the content's hash names its folder, so the same bytes are
    stored once, a second name being a hard link."""
    path = storage.store_upload(b"not really a video", "../../etc/evil $name.MP4")
    digest = hashlib.sha256(b"not really a video").hexdigest()[:20]
    assert path == studio_home / "uploads" / digest / "evil _name.mp4"
    assert path.read_bytes() == b"not really a video"
    assert storage.store_upload(b"not really a video", "../../etc/evil $name.MP4") == path  # again: the same
    other = storage.store_upload(b"not really a video", "My Clip (1).mp4")
    assert other == path.parent / "My Clip (1).mp4" and os.path.samefile(other, path)  # one copy, two names
    assert storage.store_upload(b"z", ".hidden.mov").name == "hidden.mov"
    assert storage.store_upload(b"w", "été 2.mkv").name == "été 2.mkv"
    with pytest.raises(ConfigError, match="not a video file name"):
        storage.store_upload(b"x", "payload.sh")
    with pytest.raises(ConfigError, match="empty"):
        storage.store_upload(b"", "a.mp4")


def test_list_media(studio_home: Path) -> None:
    (studio_home / "samples").mkdir(parents=True)
    for name in ("b.mp4", "a.MOV", ".partial.mp4", "notes.txt"):
        (studio_home / "samples" / name).write_bytes(b"x")
    up = storage.store_upload(b"y", "c.mkv")
    assert [p.name for p in storage.list_media()] == ["a.MOV", "b.mp4", up.name]
    assert up not in storage.list_media(with_uploads=False)


def test_disk_guard(studio_home: Path) -> None:
    free = disk.free_bytes()
    assert storage.check_free_space(need_bytes=0, settings=storage.StudioSettings(min_free_gb=0.0)) == free
    with pytest.raises(DiskFullError, match="GiB free"):
        storage.check_free_space(need_bytes=free + storage.GIB, settings=storage.StudioSettings(min_free_gb=0.0))
    with pytest.raises(OSError):  # also the builtin
        storage.check_free_space(settings=storage.StudioSettings(min_free_gb=10_000.0))


def test_render_path_is_new(studio_home: Path) -> None:
    """``<input's name>_<style>.mp4``, then ``_2``, ``_3``: an earlier render is never overwritten."""
    a = storage.render_path("/x/My Clip (1)!.mp4", "cartoon")
    assert a == studio_home / "renders" / "My Clip (1)__cartoon.mp4"
    a.parent.mkdir(parents=True)
    a.write_bytes(b"")
    b = storage.render_path("/x/My Clip (1)!.mp4", "cartoon")
    assert b.name == "My Clip (1)__cartoon_2.mp4"
    b.write_bytes(b"")
    assert storage.render_path("/x/My Clip (1)!.mp4", "cartoon").name == "My Clip (1)__cartoon_3.mp4"


def test_output_folder_per_job_within_the_allowed(studio_home: Path, tmp_path: Path) -> None:
    """A render may go to any of the studio's output folders (renders/ always one), named as in renders/,
    never over a queued job's output; any other folder is refused naming the allowed ones."""
    delivery = tmp_path / "delivery"
    storage.save_settings(storage.StudioSettings(output_folders=("renders", str(delivery))))
    assert storage.output_folders() == [studio_home / "renders", delivery]
    delivery.mkdir()
    path = storage.render_path("/x/My Clip (1).mp4", "cartoon", ".mov", folder=delivery)
    assert path == delivery / "My Clip (1)_cartoon.mov"
    assert storage.render_path("/x/My Clip (1).mp4", "cartoon", ".mov", folder=delivery,
                               taken=[str(path)]).name == "My Clip (1)_cartoon_2.mov"
    with pytest.raises(OutputError, match=r"not an output folder of the studio \(allowed: .*delivery"):
        storage.render_path("/x/a.mp4", "cartoon", folder=tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="output_folders: at least one"):
        storage.save_settings(storage.StudioSettings(output_folders=()))
    assert storage.output_folders(storage.StudioSettings(output_folders=("/mnt/x",)))[-1] == studio_home / "renders"


def test_cleanup_by_tier_keeps_active(studio_home: Path) -> None:
    old = time.time() - 10 * 86400
    files = {}
    for tier, name in (("uploads", "u.mp4"), ("work", "abc/chunk0.mp4"), ("renders", "r.mp4"),
                       ("uploads", "kept.mp4"), ("uploads", "new.mp4")):
        p = studio_home / tier / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"12345")
        if name != "new.mp4":
            os.utime(p, (old, old))
        files[name] = p
    settings = storage.StudioSettings(retention=storage.Retention(uploads=1.0, work=1.0, renders=0.0))
    dry = storage.cleanup(settings, keep=[files["kept.mp4"]], dry_run=True)
    assert files["u.mp4"].exists() and len(dry.removed) == 2
    report = storage.cleanup(settings, keep=[files["kept.mp4"]])
    assert sorted(p.name for p in report.removed) == ["abc", "u.mp4"]
    assert report.bytes == 10 and report.kept_in_use == 1
    assert files["kept.mp4"].exists() and files["new.mp4"].exists() and files["r.mp4"].exists()  # renders: forever
    usage = {u.tier: u for u in storage.usage(settings)}
    assert usage["uploads"].files == 2 and usage["work"].files == 0 and usage["renders"].retention_days == 0.0


def _cube(gain: float) -> bytes:
    rows = [f"{r * gain / 1:.4f} {g:.4f} {b:.4f}" for b in (0.0, 1.0) for g in (0.0, 1.0) for r in (0.0, 1.0)]
    return ("TITLE \"t\"\nLUT_3D_SIZE 2\n" + "\n".join(rows) + "\n").encode()


def test_uploaded_lut_is_checked_and_kept_by_its_name(studio_home: Path) -> None:
    from core.assets import resolve_asset
    from core.errors import LutError

    assert storage.store_lut(_cube(0.9), "My Look (v2).cube") == "My Look (v2)"
    assert storage.store_lut(_cube(0.9), "My Look (v2).cube") == "My Look (v2)"  # the same LUT again
    assert storage.store_lut(_cube(0.8), "My Look (v2).cube") == "My Look (v2)_2"  # another under that name
    assert resolve_asset("My Look (v2)_2", "luts", ".cube").read_bytes() == _cube(0.8)
    with pytest.raises(LutError, match=r"upload 'bad.cube':2: expected 8 table rows"):
        storage.store_lut(b"LUT_3D_SIZE 2\n0 0 0\n", "bad.cube")
    assert sorted(p.name for p in (studio_home / "luts").iterdir()) == ["My Look (v2).cube", "My Look (v2)_2.cube"]


def test_plan_cleanup_counts_and_sizes_what_cleanup_would_remove(studio_home: Path) -> None:
    old = time.time() - 10 * 86400
    for tier, name, size in (("uploads", "h1/a.mp4", 5), ("uploads", "h2/b.mp4", 7), ("work", "job/c0.mp4", 11),
                             ("work", "job/c1.mp4", 13), ("renders", "r.mp4", 17), ("uploads", "h3/kept.mp4", 19)):
        p = studio_home / tier / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * size)
        os.utime(p, (old, old))
    settings = storage.StudioSettings(retention=storage.Retention(uploads=1.0, work=1.0, renders=0.0))
    keep = [studio_home / "uploads" / "h3" / "kept.mp4"]
    plan = storage.plan_cleanup(settings, keep=keep)
    assert plan.tiers == (("uploads", 2, 12), ("work", 1, 24)) and plan.bytes == 36 and plan.kept_in_use == 1
    assert sorted(p.name for p in plan.items) == ["h1", "h2", "job"]
    assert all(p.exists() for p in plan.items)  # a plan removes nothing
    report = storage.cleanup(settings, keep=keep, now=plan.now, only=plan.items)
    assert sorted(report.removed) == sorted(plan.items) and report.bytes == plan.bytes


def test_cleanup_only_removes_none_but_the_confirmed(studio_home: Path) -> None:
    """Confirming a plan removes what it listed and nothing that became due after it was shown."""
    old = time.time() - 10 * 86400
    settings = storage.StudioSettings(retention=storage.Retention(uploads=1.0))
    listed, later = studio_home / "uploads" / "a.mp4", studio_home / "uploads" / "b.mp4"
    listed.parent.mkdir(parents=True)
    listed.write_bytes(b"12345")
    os.utime(listed, (old, old))
    plan = storage.plan_cleanup(settings)
    later.write_bytes(b"123")
    os.utime(later, (old, old))  # due now, but not in the plan the user read
    report = storage.cleanup(settings, now=plan.now, only=plan.items)
    assert report.removed == (listed,) and not listed.exists() and later.exists()
    assert storage.cleanup(settings, only=()).removed == ()  # an empty plan removes nothing
    assert storage.plan_cleanup(settings).items == (later,)
