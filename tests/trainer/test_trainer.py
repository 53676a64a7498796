"""The trainer: pairs, losses, fine-tuning (early stop, best checkpoint, resume), weights, train-and-register.

Pair sets are made here: seeded random shapes as inputs, a known filter (blur, channel swap, inversion)
as targets, so a network can learn them in a CPU-friendly number of steps.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import trainer.train  # noqa: E402
from core.errors import ConfigError, MediaNotFoundError, ModelError  # noqa: E402
from core.ml import registry  # noqa: E402
from core.video.stills import write_image  # noqa: E402
from scripts import cli  # noqa: E402
from trainer import dataset, losses  # noqa: E402
from trainer.finetune import BEST, LAST, LOG, FinetuneConfig, finetune, load_best, score_held_out  # noqa: E402
from trainer.model import COMPACT, DRAW, INK, LOOK, Arch, LocalContrast, TransformerNet, gaussian_taps, log_luma  # noqa: E402
from trainer.quantize import QualityGateError  # noqa: E402
from trainer.train import default_name, train_model  # noqa: E402
from trainer.weights import load_checkpoint, load_npz, save_npz  # noqa: E402

TINY = Arch(channels=(8, 16, 16), blocks=1, outer_kernel=3, norm="none", skips=True)


def shapes(rng: np.random.Generator, h: int = 72, w: int = 96) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    for _ in range(6):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, centre, int(rng.integers(4, 24)), colour, -1)
    return img


def known_filter(rgb: np.ndarray) -> np.ndarray:
    """The target the network must learn: a soft blur, channels reversed, inverted."""
    return np.ascontiguousarray(255 - cv2.GaussianBlur(rgb, (5, 5), 1.2)[:, :, ::-1])


def write_pairs(root: Path, n: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = shapes(rng)
        write_image(root / "inputs" / f"f{i:03d}.png", a)
        write_image(root / "targets" / f"f{i:03d}.png", known_filter(a))
    return root


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"))


FAST = FinetuneConfig(epochs=8, batch=4, crop=64, lr=3e-3, repeats=4, patience=8)


# ---------------------------------------------------------------------------------------------- model

@pytest.mark.parametrize("size", [(37, 53), (64, 64), (8, 8)])
def test_cardinality_any_size(size: tuple[int, int]) -> None:
    net = TransformerNet(TINY).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, *size)).shape == (2, 3, *size)


def test_residual_starts_near_its_input_and_mono_draws_in_one_tint() -> None:
    """The two structural promises of the bundled styles' networks: ``residual`` is its input plus a change
    (a grade cannot lose detail it never carried), ``mono`` gives every pixel one tone through one tint, so
    its three channels are affine in each other (a drawing cannot come out in the input's colours)."""
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        for p in (net := TransformerNet(replace(TINY, residual=True))).out.parameters():
            p.zero_()
        assert torch.equal(net(x), x)
        y = TransformerNet(replace(TINY, mono=True, pointwise=4))(x)[0].reshape(3, -1)
    tone = (y[0] - y[0].mean()) / y[0].std()
    for c in (1, 2):
        assert abs(float(torch.corrcoef(torch.stack([tone, y[c]]))[0, 1])) > 0.9999


def test_log_luma_turns_ratios_into_differences() -> None:
    """Black maps to 0 and white to ~1; two greys in the same ratio lie the same distance apart at any
    brightness (the colour dodge the sketch model learns is a ratio of a pixel to its neighbourhood)."""
    greys = torch.tensor([0.0, 1.0, 0.1, 0.2, 0.4, 0.8]).reshape(1, 1, 1, 6).repeat(1, 3, 1, 1)
    out = log_luma(greys)
    assert out.shape == (1, 4, 1, 6) and torch.equal(out[:, :3], greys)
    tone = out[0, 3, 0]
    assert float(tone[0]) == 0.0 and abs(float(tone[1]) - 1.0) < 0.01
    steps = tone[3:] - tone[2:-1]
    assert float(steps.max() - steps.min()) < 0.01
    net = TransformerNet(replace(TINY, log_luma=True, mono=True, pointwise=4)).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 37, 53)).shape == (1, 3, 37, 53)


def test_local_contrast_is_the_dodge_ratio() -> None:
    """Flat colour of any hue and brightness gives 0 (white paper in a dodge, where the ink net drew saturated
    bars grey); a dark line on a light ground gives log2 of its ratio to the local mean, negative on the
    line, at every scale; the ground beside it is lighter than its mean (positive). Replicate padding: a
    frame smaller than the blur works, and a flat border stays 0."""
    lc = LocalContrast((2.0, 8.0))
    for rgb in ((1.0, 0.0, 0.0), (0.1, 0.5, 0.9), (0.02, 0.02, 0.02)):
        flat = torch.tensor(rgb).view(1, 3, 1, 1).repeat(1, 1, 9, 40)
        assert float(lc(flat).abs().max()) < 1e-5
    img = torch.full((1, 3, 64, 64), 0.8)
    img[:, :, :, 31:33] = 0.2
    out = lc(img)
    assert out.shape == (1, 2, 64, 64)
    on_line, beside = out[0, :, 32, 31], out[0, :, 32, 24]
    assert bool((on_line < -0.05).all()) and bool((beside >= 0).all())
    assert float(on_line[1]) < float(on_line[0])  # the wider mean is lighter: the line is darker against it
    taps = gaussian_taps(8.0).flatten()
    mean8 = 0.8 - 0.6 * float(taps[len(taps) // 2] + taps[len(taps) // 2 + 1])  # the 2-px line's share
    expected = (math.log2(0.2 + 1 / 256) - math.log2(mean8 + 1 / 256)) / 8
    assert abs(float(on_line[1]) - expected) < 0.01
    assert lc(torch.rand(1, 3, 3, 5)).shape == (1, 2, 3, 5)


def test_look_net_is_per_pixel_and_starts_as_the_identity() -> None:
    """The ``look`` net has no spatial network: changing one pixel changes that pixel only, so a grade learnt
    on one clip is a function of the colour that carries to any picture; untrained it returns its input; the
    temporal term (a per-pixel net moves exactly as its input) is skipped, not paid for."""
    net = TransformerNet(LOOK)
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.equal(net(x), x)
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        y = net(x)
        x2 = x.clone()
        x2[0, :, 5, 7] = 1 - x2[0, :, 5, 7]
        changed = (net(x2) - y).abs().sum(dim=1)[0] > 0
    assert changed[5, 7] and int(changed.sum()) == 1
    w = losses.LossWeights(temporal=1.0)
    target = torch.rand_like(x)
    assert torch.equal(losses.total(net, x, target, w), losses.fidelity(net(x), target, w))
    with pytest.raises(ValueError, match="spatial=False"):
        Arch(spatial=False)
    assert Arch.from_json(LOOK.to_json()) == LOOK and "spatial" not in DRAW.to_json()


def test_arch_json_round_trip() -> None:
    """``contrast`` is written only when set, so the bundled models saved before it existed read back equal."""
    assert Arch.from_json(DRAW.to_json()) == DRAW and DRAW.to_json()["contrast"] == [2.0, 4.0, 8.0, 16.0]
    assert "contrast" not in INK.to_json() and Arch.from_json(INK.to_json()) == INK
    saved = json.loads(json.dumps(DRAW.to_json()))
    assert TransformerNet(Arch.from_json(saved)).arch == DRAW


def test_exception_bad_arch() -> None:
    with pytest.raises(ValueError, match="mono and residual"):
        Arch(mono=True, residual=True)
    with pytest.raises(ValueError, match="outer_kernel"):
        Arch(outer_kernel=4)
    with pytest.raises(ValueError, match="norm"):
        Arch(norm="batch")
    with pytest.raises(ValueError, match="contrast"):
        Arch(contrast=(100.0,))
    with pytest.raises(ValueError, match="keys"):
        Arch.from_json({"channels": [1, 2, 3], "width": 2})


# ---------------------------------------------------------------------------------------------- pairs

def test_smoke_pairs(pair_dir: Path) -> None:
    pairs = dataset.load_pairs(pair_dir)
    assert [p.stem for p in pairs] == [f"f{i:03d}" for i in range(10)]
    train, val = dataset.split(pairs, 0.2)
    assert train and val and len(train) + len(val) == 10
    assert not {p.stem for p in train} & {p.stem for p in val}


def test_split_is_stable_when_pairs_are_added(tmp_path: Path) -> None:
    small = dataset.load_pairs(write_pairs(tmp_path / "a", n=10))
    big = dataset.load_pairs(write_pairs(tmp_path / "b", n=30))
    val_small = {p.stem for p in dataset.split(small, 0.5)[1]}
    val_big = {p.stem for p in dataset.split(big, 0.5)[1]}
    assert all(dataset.is_validation(s, 0.5) for s in val_small)  # by hash, not the tiny-set fallback
    assert val_small <= val_big and len(val_big) > len(val_small)


def test_split_by_clip_when_pairs_name_their_clips(tmp_path: Path) -> None:
    """With groups.json naming two clips or more, whole clips validate (never all of them); one clip named,
    or none, splits by frame as before."""
    root = write_pairs(tmp_path / "p", n=12)
    clips = {f"f{i:03d}": f"clip{i % 3}.mp4" for i in range(12)}
    (root / dataset.GROUPS).write_text(json.dumps(clips))
    pairs = dataset.load_pairs(root)
    assert [p.group for p in pairs] == [clips[p.stem] for p in pairs]
    for fraction in (0.2, 0.5, 0.9):
        train, val = dataset.split(pairs, fraction)
        held = {p.group for p in val}
        assert held and not held & {p.group for p in train} and len(train) + len(val) == 12
    (root / dataset.GROUPS).write_text(json.dumps(dict.fromkeys(clips, "one.mp4")))
    one = dataset.load_pairs(root)
    assert {p.stem for p in dataset.split(one, 0.5)[1]} == {f"f{i:03d}" for i in range(12)
                                                              if dataset.is_validation(f"f{i:03d}", 0.5)}
    (root / dataset.GROUPS).write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"groups\.json: expected an object"):
        dataset.load_pairs(root)


def test_scale_augmentation_keeps_the_crop_and_the_pairing() -> None:
    """Training crops come from frames scaled at random, input and target alike and by nearest neighbour (every
    pixel of a crop is a true (input, target) pair: an area filter would average a non-linear look's targets
    into colours it never makes), always ``crop`` pixels; a scaled crop spans more of the frame. Validation
    crops are unscaled centre crops."""
    ramp = np.tile(np.linspace(0, 255, 160).astype(np.uint8)[None, :, None], (96, 1, 3))
    rng = np.random.default_rng(0)
    a = np.clip(ramp.astype(int) + rng.integers(0, 3, ramp.shape), 0, 255).astype(np.uint8)
    pair = dataset.Pair("p", a, 255 - a)
    crops = dataset.PairCrops([pair], 48, train=True, repeats=20, scale=(0.4, 1.0))
    torch.manual_seed(0)
    seen = [crops[i] for i in range(20)]
    assert all(x.shape == (3, 48, 48) and torch.equal(y, (255 - (x * 255).round()) / 255) for x, y in seen)
    spans = [float(x[0, 0].max() - x[0, 0].min()) for x, _ in seen]
    assert max(spans) > 1.5 * min(spans)  # a crop of a frame scaled to 0.4 covers 2.5x the width
    x, _ = dataset.PairCrops([pair], 48, train=False, scale=(0.4, 1.0))[0]
    assert torch.equal(x, torch.from_numpy(a[24:72, 56:104].transpose(2, 0, 1).copy()).float() / 255)
    with pytest.raises(ConfigError, match="scale"):
        dataset.PairCrops([pair], 48, train=True, scale=(0.0, 1.0))


@pytest.mark.parametrize("damage, match", [
    ("no_targets", "targets/ is missing"),
    ("missing_target", "no image for 'f001'"),
    ("size", "differs from its input"),
    ("garbage", "not an image"),
    ("one_pair", "at least 2 pairs"),
])
def test_exception_pairs(tmp_path: Path, damage: str, match: str) -> None:
    root = write_pairs(tmp_path / "p", n=3 if damage != "one_pair" else 1)
    if damage == "no_targets":
        for f in (root / "targets").iterdir():
            f.unlink()
        (root / "targets").rmdir()
    elif damage == "missing_target":
        (root / "targets" / "f001.png").unlink()
    elif damage == "size":
        write_image(root / "targets" / "f001.png", np.zeros((10, 10, 3), np.uint8))
    elif damage == "garbage":
        (root / "inputs" / "f002.png").write_bytes(b"not a png at all")
    with pytest.raises(ConfigError, match=match):
        dataset.split(dataset.load_pairs(root), 0.2)


def test_exception_pairs_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFoundError, match="does not exist"):
        dataset.load_pairs(tmp_path / "nothing")


def test_crops_flip_input_and_target_together(pair_dir: Path) -> None:
    pairs = dataset.load_pairs(pair_dir)
    crops = dataset.PairCrops(pairs, 48, train=True)
    torch.manual_seed(3)
    for i in range(len(crops)):
        a, b = crops[i]
        assert a.shape == b.shape == (3, 48, 48)
        ref = known_filter((a.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        got = (b.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        inner = (slice(4, -4), slice(4, -4))  # the blur's border differs inside a crop
        assert np.abs(ref[inner].astype(int) - got[inner]).max() <= 1


def test_data_hash_changes_with_content(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "p", n=3)
    before = dataset.data_hash(root)
    assert dataset.data_hash(root) == before
    write_image(root / "targets" / "f000.png", np.zeros((72, 96, 3), np.uint8))
    assert dataset.data_hash(root) != before


# ---------------------------------------------------------------------------------------------- losses

def test_temporal_loss_zero_for_pointwise_network() -> None:
    """A per-pixel function commutes with any warp; a position-dependent one does not."""
    x = torch.rand(2, 3, 40, 56)
    w = losses.LossWeights(shift_px=2.0)
    gen = torch.Generator().manual_seed(0)
    assert float(losses.temporal_loss(lambda t: 1 - t, x, 1 - x, w, gen)) < 1e-5
    ramp = torch.linspace(0, 1, 56).expand(1, 1, 40, 56)
    assert float(losses.temporal_loss(lambda t: t * ramp, x, x * ramp, w, gen)) > 1e-3


def test_sobel_and_warp_identity() -> None:
    assert float(losses.sobel(torch.full((1, 3, 8, 8), 0.7)).abs().max()) < 1e-7
    x = torch.rand(1, 3, 16, 20)
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    out, mask = losses.warp(x, theta)
    assert torch.allclose(out, x, atol=1e-5) and bool(mask.all())


# ---------------------------------------------------------------------------------------------- fine-tuning

def test_finetune_halves_validation_loss(pair_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = finetune(TransformerNet(COMPACT), dataset.load_pairs(pair_dir), tmp_path / "run", FAST)
    assert result.best_val <= 0.5 * result.first_val, (result.first_val, [h.val_loss for h in result.history])
    log = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == list(range(1, 9))
    assert log[-1]["event"] == "end" and log[-1]["best_val"] == pytest.approx(result.best_val)
    best = load_best(result)  # the best checkpoint is the best epoch's weights
    again = finetune(best, dataset.load_pairs(pair_dir), tmp_path / "check", FinetuneConfig(
        **{**FAST.__dict__, "epochs": 1, "lr": 1e-12}))
    assert again.first_val == pytest.approx(result.best_val, rel=1e-5)


def test_early_stopping(pair_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 20, "lr": 1e-9, "patience": 2, "repeats": 1})
    result = finetune(TransformerNet(TINY), dataset.load_pairs(pair_dir), tmp_path, cfg)
    assert result.stopped_early and result.epochs_run == 3  # epoch 1 sets the best, 2 and 3 do not improve
    assert load_checkpoint(tmp_path / BEST)["epoch"] == 1


def test_resumed_equals_uninterrupted(pair_dir: Path, tmp_path: Path) -> None:
    pairs = dataset.load_pairs(pair_dir)
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 4, "repeats": 1})
    torch.manual_seed(0)
    whole = finetune(TransformerNet(TINY), pairs, tmp_path / "whole", cfg)

    def crash(record) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        finetune(TransformerNet(TINY), pairs, tmp_path / "split", cfg, on_epoch=crash)
    assert load_checkpoint(tmp_path / "split" / LAST)["epoch"] == 2
    torch.manual_seed(123)  # a different fresh net: every weight must come from the checkpoint
    resumed = finetune(TransformerNet(TINY), pairs, tmp_path / "split", cfg, resume=True)
    assert [h.val_loss for h in resumed.history] == pytest.approx([h.val_loss for h in whole.history], rel=1e-6)
    assert resumed.first_val == whole.first_val != whole.history[0].val_loss  # the start's, not epoch 1's
    a = load_checkpoint(tmp_path / "whole" / LAST)["model"]
    b = load_checkpoint(tmp_path / "split" / LAST)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_exception_resume_with_other_settings(pair_dir: Path, tmp_path: Path) -> None:
    pairs = dataset.load_pairs(pair_dir)
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 1, "repeats": 1})
    finetune(TransformerNet(TINY), pairs, tmp_path, cfg)
    with pytest.raises(ConfigError, match="other settings"):
        finetune(TransformerNet(TINY), pairs, tmp_path, FinetuneConfig(**{**cfg.__dict__, "lr": 0.1}), resume=True)


# ---------------------------------------------------------------------------------------------- weights

def test_npz_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = TransformerNet(TINY).eval()
    save_npz(net, tmp_path / "w.npz")
    back = load_npz(tmp_path / "w.npz").eval()
    assert back.arch == TINY
    x = torch.rand(1, 3, 21, 33)
    with torch.no_grad():
        assert torch.equal(net(x), back(x))


def test_checkpoint_never_runs_pickled_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    buf = io.BytesIO()
    torch.save({"model": {}, "arch": {}, "x": Evil()}, buf)
    (tmp_path / "last.pt").write_bytes(buf.getvalue())
    with pytest.raises(ModelError, match="not a readable training checkpoint"):
        load_checkpoint(tmp_path / "last.pt")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "w.npz").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelError, match="not a weights file"):
        load_npz(tmp_path / "w.npz")
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------- train + register

def test_train_register_and_finetune_again(pair_dir: Path, tmp_path: Path) -> None:
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 2, "repeats": 1})
    first = train_model(pair_dir, "compact", "blur", cfg, folder=tmp_path / "r1")
    assert (first.entry.spec, first.entry.state) == ("blur@1", "candidate")
    assert registry.info("blur").active is None  # a new name: nothing renders by name before a review
    with pytest.raises(ConfigError, match=r"blur@1 is a candidate awaiting review; .*models activate blur@1"):
        train_model(pair_dir, "blur", None, cfg, folder=tmp_path / "r0")  # nor does it serve as a base by name
    assert first.entry.lineage == {"base": "compact", "data_hash": dataset.data_hash(pair_dir), "epochs": 2,
                                   "val_loss": round(first.run.best_val, 6)}
    assert first.entry.measured_fps and first.entry.measured_fps > 0
    registry.activate("blur", 1)
    assert registry.resolve_weights("blur").is_file()
    # a fine-tune is a model of its own: blur is untouched, the new one is blur-ft-1
    second = train_model(pair_dir, "blur", None, cfg, folder=tmp_path / "r2")
    assert second.entry.spec == "blur-ft-1@1" and second.entry.lineage["base"] == "blur@1"
    assert second.run.first_val == pytest.approx(first.run.best_val, rel=1e-4)  # it started from v1's weights
    assert [e.spec for e in registry.info("blur").versions] == ["blur@1"]
    assert default_name("blur") == "blur-ft-2" and default_name("blur-ft-1@1") == "blur-ft-2"
    # the base's own name only when asked: then it is the base's next version, a candidate
    third = train_model(pair_dir, "blur-ft-1@1", "blur", cfg, folder=tmp_path / "r3")
    assert third.entry.spec == "blur@2" and third.entry.lineage["base"] == "blur-ft-1@1"
    assert registry.info("blur").active == 1 and registry.info("blur").state(2) == "candidate"


def test_fine_tune_leaves_the_active_version_until_activated(pair_dir: Path, tmp_path: Path) -> None:
    """Issue 22: training a new version of an active model registers a candidate with its review record; the
    render by name keeps the active version's file until activate; roll back then returns to it."""
    from stylizers.fast_style import FastStyle, FastStyleParams
    from trainer import review

    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 2, "repeats": 1})
    train_model(pair_dir, "compact", "live", cfg, folder=tmp_path / "r1")
    registry.activate("live", 1)
    v1 = registry.resolve("live")
    rep = train_model(pair_dir, "live", "live", cfg, folder=tmp_path / "r2", description="sharper")
    assert (rep.entry.spec, rep.entry.state) == ("live@2", "candidate")
    info = registry.info("live")
    assert (info.active, info.history, info.state(2)) == (1, (), "candidate")
    assert registry.resolve("live") == v1 and FastStyle.pin(FastStyleParams(model="live")).model == "live@1"
    assert "live@2" not in {e.spec for e in registry.list_models()}
    # the review record beside it: what the Trainer page compares
    assert review.load(rep.entry) == json.loads(json.dumps(rep.review)) and rep.review["base"] == "live@1"
    held = [p.stem for p in dataset.split(dataset.load_pairs(pair_dir), cfg.val_fraction)[1]]
    assert rep.review["held_out"] == held and rep.review["pairs"] == str(pair_dir.absolute())
    val = rep.review["validation"]
    assert (val["first_val"], val["best_val"], val["epoch1_val"]) == (rep.run.first_val, rep.run.best_val,
                                                                      rep.run.history[0].val_loss)
    rows = {g.gate.split(" (")[0]: g for g in review.gates(rep.review, ("live@1", 3.0))}
    assert list(rows) == ["parity", "int8", "speed", "validation loss", "held-out pairs"]
    assert rows["parity"].result == "pass" and rows["int8"].result == "not tried"
    assert rows["validation loss"].result == ("pass" if rep.run.best_val < rep.run.first_val else "fail")
    assert rows["speed"].threshold == "live@1: 3.00 fps"
    assert f"first_val {rep.run.first_val:.4f} is the validation loss of the base's own weights (live@1)" \
        in review.first_val_note(rep.review)
    shots = review.samples(rep.review, "live@2", "live@1", count=2)
    assert [s.stem for s in shots] == held[:2]
    for s in shots:
        assert s.input.shape == s.reference.shape == s.candidate.shape == s.target.shape == (72, 96, 3)
        assert s.candidate.dtype == np.uint8
    assert any(not np.array_equal(s.reference, s.candidate) for s in shots)

    assert registry.activate("live", 2).spec == "live@2" and registry.resolve("live") != v1
    assert registry.rollback("live").spec == "live@1" and registry.resolve("live") == v1


def test_finetune_card(pair_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card of a fine-tune: its pairs, its look, base vs fine-tune on the held-out pairs, the int8
    decision (here with an injected int8 speed, so the test decides nothing by timing)."""
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 2, "repeats": 1})
    train_model(pair_dir, "compact", "shapes", cfg, folder=tmp_path / "r0")
    registry.activate("shapes", 1)
    monkeypatch.setattr(trainer.train, "measure_speedup", lambda fp32, int8: 0.81)
    rep = train_model(pair_dir, "shapes", None, cfg, folder=tmp_path / "r1", int8="try",
                      description="  soft blur, channels reversed, inverted ")
    e = rep.entry
    assert e.spec == "shapes-ft-1@1" and e.style == "soft blur, channels reversed, inverted"
    assert e.input["precision"] == "fp32" and rep.int8.precision == "fp32" and rep.int8.speedup == 0.81
    assert e.card_path == e.path.with_suffix(".md") and e.card_path.read_text() == rep.card
    held_out = dataset.split(dataset.load_pairs(pair_dir), cfg.val_fraction)[1]
    assert rep.before.pairs == rep.after.pairs == len(held_out)
    base_net = load_npz(registry.resolve_weights("shapes@1"))
    assert rep.before == score_held_out(base_net, held_out)  # "before" is the base's own score
    assert rep.after == score_held_out(load_npz(registry.resolve_weights("shapes-ft-1@1")), held_out)
    card = rep.card
    for text in ("# shapes-ft-1@1: soft blur, channels reversed, inverted",
                 "fine-tuned from `shapes@1`", f"10 pairs from `{pair_dir}`", f"{len(held_out)} held out: ",
                 f"base `shapes@1` PSNR {rep.before.psnr_db:.2f} dB, SSIM {rep.before.ssim:.3f}",
                 f"-> this model PSNR {rep.after.psnr_db:.2f} dB, SSIM {rep.after.ssim:.3f}",
                 "precision fp32: int8 refused for speed: 0.81x fp32 speed at 1280x720 (gate 1.1x)",
                 f"{rep.int8.psnr_db:.1f} dB PSNR vs fp32"):
        assert text in card, (text, card)
    # the same run with int8 paying off registers int8
    monkeypatch.setattr(trainer.train, "measure_speedup", lambda fp32, int8: 1.6)
    fast = train_model(pair_dir, "shapes", "shapes-int8", cfg, folder=tmp_path / "r2", int8="try")
    assert fast.entry.input["precision"] == "int8" and "precision int8: int8 kept: 1.60x" in fast.card
    # require: a slow int8 registers nothing
    monkeypatch.setattr(trainer.train, "measure_speedup", lambda fp32, int8: 0.9)
    with pytest.raises(QualityGateError, match=r"--int8 require: int8 refused for speed: 0\.90x"):
        train_model(pair_dir, "shapes", "never", cfg, folder=tmp_path / "r3", int8="require")
    assert not registry.is_registered("never")


def test_exception_bad_name(pair_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs --name"):
        train_model(pair_dir, "compact", None, FAST, folder=tmp_path / "r")
    with pytest.raises(ConfigError, match="bad model name 'no way'"):
        train_model(pair_dir, "compact", "no way", FAST, folder=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before any training


def test_exception_tampered_weights(pair_dir: Path, tmp_path: Path) -> None:
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 1, "repeats": 1})
    train_model(pair_dir, "compact", "tamper", cfg, folder=tmp_path / "r")
    path = registry.resolve_weights("tamper@1")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="do not match the manifest"):
        train_model(pair_dir, "tamper@1", None, cfg, folder=tmp_path / "r2")


def test_exception_base_without_weights(pair_dir: Path, tmp_path: Path) -> None:
    """A model registered without the trainer's .npz beside it (any third-party model) cannot be a base."""
    cfg = FinetuneConfig(**{**FAST.__dict__, "epochs": 1, "repeats": 1})
    trained = train_model(pair_dir, "compact", "plain", cfg, folder=tmp_path / "r").entry.path
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(trained.read_bytes())
    assert registry.register(bare, "bare").weights_sha256 is None
    with pytest.raises(ConfigError, match="only models trained here can be fine-tuned"):
        train_model(pair_dir, "bare", None, FAST, folder=tmp_path / "r2")


def test_cli_train(pair_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One real run, int8 tried and timed for real: what the user sees and the card record the figures."""
    rc = cli.main(["train", "--pairs", str(pair_dir), "--base", "compact", "--name", "clitoon", "--epochs", "2",
                   "--batch", "4", "--crop", "48", "--int8", "try", "--description", "inverted soft blur",
                   "--run", str(tmp_path / "run"), "-q"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "epoch 2/2" in out.err and "registered clitoon@1 (candidate)" in out.out and "parity max error" in out.out
    assert "held-out pairs (" in out.out
    assert "`python -m scripts.cli models activate clitoon@1` to make it live" in out.out
    assert "until then `model=clitoon` has no active version yet" in out.out
    card = registry.entry("clitoon@1").card_path
    assert f"model card: {card}" in out.out
    decision = next(line for line in out.out.splitlines() if line.startswith("registered int8: ")
                    or line.startswith("registered fp32: "))
    reason = decision.partition(": ")[2]
    assert ("dB PSNR vs fp32 (gate 32 dB)" in reason and "fp32 speed at 1280x720 (gate 1.1x)" in reason) \
        or "refused for quality" in reason, reason
    assert reason in card.read_text() and "# clitoon@1: inverted soft blur" in card.read_text()
    assert cli.main(["train", "--pairs", str(tmp_path / "none"), "--base", "compact", "--name", "x"]) == 2
    assert cli.main(["train", "--pairs", str(pair_dir), "--base", "nosuch"]) == 2
    assert "not a registered model" in capsys.readouterr().err
