"""The studio's pages under Streamlit's AppTest: each renders, shows its key widgets, and its actions reach
the core (a queued job in this test's VP_HOME, a feedback record, an approved pair, a saved preset)."""

from __future__ import annotations

import re
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.events import epoch_records
from app.wipe import wipe
from core.video.synthetic import ClipSpec, make_clip

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "app" / "views"
#: pages import torch-free but heavy modules (cv2, plotly, sklearn): AppTest's 3 s default is too short
TIMEOUT = 30


def page(name: str) -> AppTest:
    """One page run alone. AppTest puts the page's own folder first on ``sys.path``, where ``views/trainer.py``
    would shadow the ``trainer`` package unless it is imported already (the studio itself runs from app/, so
    it never meets this); importing it here makes the order of the tests not matter."""
    import trainer.arch  # noqa: F401

    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture
def sample(studio_home: Path) -> Path:
    """A small clip in the default media folder (samples/) of this test's studio home."""
    (studio_home / "samples").mkdir(parents=True)
    return make_clip(studio_home / "samples" / "sample.mp4",
                     ClipSpec(width=192, height=108, frames=24, fps=Fraction(25), cut_at=12, gop=12, seed=5))


@pytest.fixture
def queue(studio_home: Path):
    from core.studio.queue import JobQueue

    return JobQueue()


def test_smoke_navigation(sample: Path) -> None:
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    no_errors(at)
    assert at.title[0].value == "Dashboard"
    for name, title in (("queue", "Batch queue"), ("style_lab", "Style Lab"), ("trainer", "Trainer"),
                        ("settings", "Settings")):
        at.switch_page(f"views/{name}.py").run()
        assert not at.exception, (name, [e.value for e in at.exception])
        assert at.title[0].value == title


def test_dashboard_preview_and_queue(sample: Path, queue) -> None:
    at = page("dashboard").run()
    no_errors(at)
    assert at.selectbox(key="dash.style").value == "cartoon"
    assert at.selectbox(key="dash.file").value == sample.resolve()
    assert len(at.get("image")) == 1  # the wipe of original and preview
    at.slider(key="dash.params.cartoon.balanced.n_colors").set_value(5).run()
    no_errors(at)
    at.button(key="dash.queue").click().run()
    no_errors(at)
    jobs = queue.list()
    assert [(j.kind, j.spec["style"], j.spec["sets"]) for j in jobs] == [("render", "cartoon", {"n_colors": "5"})]
    assert Path(jobs[0].spec["input"]) == sample.resolve()
    assert Path(jobs[0].spec["output"]).parent.name == "renders"


def test_dashboard_output_folder_per_job(sample: Path, queue, tmp_path: Path) -> None:
    from core.studio import storage

    storage.save_settings(storage.StudioSettings(output_folders=("renders", str(tmp_path / "delivery"))))
    at = page("dashboard").run()
    assert at.selectbox(key="dash.out.folder").options[1] == str(tmp_path / "delivery")
    at.selectbox(key="dash.out.folder").set_value(tmp_path / "delivery").run()
    at.button(key="dash.queue").click().run()
    at.button(key="dash.queue").click().run()  # the same render twice: a second name, not a refusal
    no_errors(at)
    assert [Path(j.spec["output"]) for j in queue.list()] == [tmp_path / "delivery" / "sample_cartoon.mp4",
                                                            tmp_path / "delivery" / "sample_cartoon_2.mp4"]


def test_dashboard_delivery_format(sample: Path, queue) -> None:
    """A delivery format is picked on the Dashboard: its codec goes in the job's sets, its container (or a
    folder, for an image sequence) in the output's name."""
    at = page("dashboard").run()
    at.selectbox(key="dash.out.format").set_value("ProRes 422 HQ (.mov)").run()
    at.button(key="dash.queue").click().run()
    at.selectbox(key="dash.out.format").set_value("PNG image sequence (folder)").run()
    at.button(key="dash.queue").click().run()
    no_errors(at)
    jobs = queue.list()
    assert [(Path(j.spec["output"]).name, j.spec["sets"]) for j in jobs] == [
        ("sample_cartoon.mov", {"encoder.codec": "prores_ks"}), ("sample_cartoon", {"encoder.codec": "png"})]


def test_dashboard_model_picker(sample: Path, queue) -> None:
    """The neural style's model is picked from the registry (name: its active version; name@version pinned),
    with its card below; a file can still be given."""
    at = page("dashboard").run()
    at.selectbox(key="dash.style").set_value("neural").run()
    no_errors(at)
    picker = at.selectbox(key="dash.params.neural.balanced.model")
    assert picker.value == "sketch"
    labels = picker.options  # shown as "teal@2  (v2, active): a teal-and-orange film grade ..."
    assert all(any(o.startswith(f"{m}  (") for o in labels) for m in ("sketch", "teal", "oil", "sketch@1", "teal@2"))
    assert any(o.startswith("sketch  (active: v") for o in labels)
    assert any("model card" in e.label for e in at.expander)
    # "automatic" settings say what they chose: the model's range, the tile from free memory
    assert at.selectbox(key="dash.params.neural.balanced.range").options[0] == \
        "auto (chosen: 1, from the model's registry entry)"
    assert re.fullmatch(r"tile: 0 = auto \(chosen: \d+ px, from free memory\)",
                        at.number_input(key="dash.params.neural.balanced.tile").label)
    picker.set_value("teal@2").run()
    no_errors(at)
    at.button(key="dash.queue").click().run()
    assert queue.list()[0].spec["sets"] == {"model": "teal@2"}
    at.selectbox(key="dash.params.neural.balanced.model").set_value("a .onnx file...").run()
    at.text_input(key="dash.params.neural.balanced.model.file").set_value("no_such.onnx").run()
    assert at.error and "no_such.onnx" in at.error[0].value  # a bad file: one line, nothing queued


def test_dashboard_lut_picker(sample: Path, queue) -> None:
    """The cinematic LUT is picked by name from the LUT folders (the bundled ones listed), or none."""
    at = page("dashboard").run()
    at.selectbox(key="dash.style").set_value("cinematic").run()
    picker = at.selectbox(key="dash.params.cinematic.balanced.lut")
    assert {"none", "teal_orange", "warm_film", "bleach_bypass", "a .cube file..."} <= set(picker.options)
    picker.set_value("warm_film").run()
    no_errors(at)
    at.button(key="dash.queue").click().run()
    assert queue.list()[0].spec["sets"].get("lut") == "warm_film"


def test_dashboard_bad_value_is_one_line(sample: Path, queue) -> None:
    at = page("dashboard").run()
    at.selectbox(key="dash.style").set_value("cinematic").run()
    at.selectbox(key="dash.params.cinematic.balanced.lut").set_value("a .cube file...").run()
    at.text_input(key="dash.params.cinematic.balanced.lut.file").set_value("no_such_lut").run()
    assert not at.exception
    assert at.error and "no_such_lut" in at.error[0].value
    assert queue.list() == []


def test_queue_page_200_jobs(sample: Path, queue) -> None:
    ids = [queue.add("render", {"input": str(sample), "output": str(sample.parent / f"out{i}.mp4"),
                                "style": "pencil"}) for i in range(200)]
    at = page("queue")
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    no_errors(at)
    print(f"\nqueue page with 200 jobs rendered in {seconds:.2f} s (AppTest)")
    assert seconds <= 2.0
    assert at.dataframe[0].value.shape[0] == 200

    at.selectbox(key="queue.job").set_value(ids[5]).run()
    at.button(key="queue.pause").click().run()
    no_errors(at)
    assert queue.get(ids[5]).state == "paused"
    at.button(key="queue.resume").click().run()
    assert queue.get(ids[5]).state == "queued"
    at.button(key="queue.top").click().run()
    assert queue.list()[0].id == ids[5]
    at.button(key="queue.down").click().run()
    assert [j.id for j in queue.list()[:2]] == [ids[0], ids[5]]
    at.button(key="queue.cancel").click().run()
    assert queue.get(ids[5]).state == "cancelled"
    at.button(key="queue.retry").click().run()
    no_errors(at)
    assert queue.get(ids[5]).state == "queued"


def test_queue_page_failed_job_says_what_to_do(sample: Path, queue) -> None:
    """A failed job opens first (the newest) and shows its advice: words naming the file, the action, the
    attempts, and the technical line folded in an expander."""
    from core.errors import UnsupportedVideoError
    from core.studio.advice import advise

    queue.add("render", {"input": str(sample), "output": str(sample.parent / "a.mp4"), "style": "pencil"})
    job_id = queue.add("render", {"input": str(sample), "output": str(sample.parent / "b.mp4"), "style": "cartoon"})
    queue.move(job_id, None)
    while (claimed := queue.claim("w", cpu_slots=1)).id != job_id:
        queue.fail(claimed.id, "w", "x", final=True)
    advice = advise(UnsupportedVideoError(f"{sample}: not a video file FFmpeg can read"), claimed.spec, final=True)
    queue.fail(job_id, "w", advice.technical, final=True, advice=advice.to_dict())
    at = page("queue").run()
    assert not at.exception
    assert at.selectbox(key="queue.job").value == job_id
    assert [e.value for e in at.error] == [advice.summary]
    assert any("What to do" in i.value and "Re-export" in i.value for i in at.info)
    assert any("tried 1 time (not retried" in c.value for c in at.caption)
    assert at.expander[0].label == "Technical detail"
    assert str(sample) in at.expander[0].code[0].value


def test_style_lab_rate_and_approve(sample: Path) -> None:
    from core.learn import feedback

    at = page("style_lab").run()
    no_errors(at)
    assert at.selectbox(key="lab.frame").options  # worst frames offered
    # two different variants to start with, never one against itself
    assert (at.selectbox(key="lab.A.style").value, at.selectbox(key="lab.B.style").value) == ("cartoon", "pencil")
    at.selectbox(key="lab.B.style").set_value("cartoon").run()
    assert at.button(key="lab.render").disabled and "same variant" in at.warning[0].value
    at.selectbox(key="lab.B.style").set_value("pencil").run()
    at.button(key="lab.render").click().run()
    no_errors(at)
    assert len(at.get("image")) >= 1
    at.radio(key="lab.choice").set_value("B")
    at.slider(key="lab.rating").set_value(4)
    at.text_area(key="lab.comment").set_value("cleaner lines")
    assert at.text_input(key="lab.rater").value == ""  # not the machine's login name
    at.button(key="lab.save").click().run()
    assert at.error and "rater" in at.error[0].value  # a rating says who made it
    at.text_input(key="lab.rater").set_value("Ana")
    at.button(key="lab.save").click().run()
    no_errors(at)
    records = feedback.list_records()
    assert [(r.choice, r.rating, r.comment, r.a.style, r.b.style) for r in records] == \
        [("B", 4, "cleaner lines", "cartoon", "pencil")]
    assert records[0].a.metrics and "ssim" in records[0].a.metrics
    # judged on motion by default: a time range, and the temporal measures beside the per-frame ones
    assert records[0].time_range is not None and records[0].frame_index is None
    assert {"warping_error", "temporal_ssim"} <= set(records[0].a.metrics) and len(at.get("video")) == 1
    at.radio(key="lab.approve_side").set_value("B")
    at.button(key="lab.approve").click().run()
    no_errors(at)
    folder = feedback.pairs_folder()
    assert [p.name for p in (folder / "targets").glob("*.png")] == [f"{feedback.pair_stem(records[0].id, 'B')}.png"]
    # a still stays possible: the frame alone, no temporal measure
    at.radio(key="lab.on").set_value("Still: the frame alone").run()
    at.button(key="lab.render").click().run()
    at.radio(key="lab.choice").set_value("A")
    at.button(key="lab.save").click().run()
    no_errors(at)
    still = feedback.list_records()[-1]
    assert still.frame_index is not None and "warping_error" not in still.a.metrics


def test_style_lab_applies_a_tuner_proposal(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The auto-tuner's proposal is a table and one click sets A and B to it; it stays on the page."""
    import app.actions

    monkeypatch.setattr(app.actions, "propose_pair", lambda clip, style, preset, budget: {
        "a": {"n_colors": 6, "smooth_color": 55.0, "line_width": 3}, "b": {"n_colors": 8, "smooth_color": 40.0,
                                                                         "line_width": 2}, "p_a": None})
    at = page("style_lab").run()
    at.button(key="lab.tune").click().run()
    no_errors(at)
    table = at.dataframe[-1].value
    assert list(table["parameter"]) == ["line_width", "n_colors", "smooth_color"] and list(table["A"]) == ["3", "6",
                                                                                                          "55.0"]
    at.button(key="lab.apply_proposal").click().run()
    no_errors(at)
    assert (at.selectbox(key="lab.A.style").value, at.selectbox(key="lab.B.style").value) == ("cartoon", "cartoon")
    prefix = "lab.{}.params.cartoon.balanced."
    assert at.slider(key=prefix.format("A") + "n_colors").value == 6
    assert at.slider(key=prefix.format("A") + "smooth_color").value == 55.0
    assert at.slider(key=prefix.format("B") + "line_width").value == 2
    assert at.dataframe[-1].value.shape[0] == 3  # the proposal is still shown


def test_trainer_launch(studio_home: Path, queue) -> None:
    from core.learn import feedback
    from core.video.stills import write_image

    folder = feedback.pairs_folder()
    for sub in ("inputs", "targets"):
        write_image(folder / sub / "p1.png", np.full((32, 32, 3), 100, np.uint8))
    at = page("trainer").run()
    no_errors(at)
    base = at.selectbox(key="train.base")
    assert "compact" in base.options
    base.set_value("compact")
    at.number_input(key="train.epochs").set_value(3)
    at.text_input(key="train.name").set_value("mine")
    at.text_area(key="train.description").set_value("warm pencil, thick lines ")
    at.button(key="train.launch").click().run()
    no_errors(at)
    (job,) = queue.list()
    assert (job.kind, job.spec["epochs"], job.spec["base"]) == ("train", 3, "compact")
    assert (job.spec["name"], job.spec["description"]) == ("mine", "warm pencil, thick lines")
    assert Path(job.spec["pairs"]) == folder
    # the registry's cards: each version its own (sketch@1 the compact net, sketch@2 the ink net, sketch@3 draw)
    for spec, network in (("sketch@1", "compact TransformerNet"), ("sketch@2", "the `ink` TransformerNet"),
                          ("sketch@3", "the `draw` TransformerNet")):
        at.selectbox(key="train.activate_spec").set_value(spec).run()
        card = next(e for e in at.expander if e.label == f"Model card of {spec}")
        assert any(m.value.startswith("# sketch: ") and network in m.value for m in card.markdown), spec


def test_trainer_shows_the_new_card(studio_home: Path, queue) -> None:
    """A finished train job: the page shows its model card, not just the raw result."""
    from core.learn import feedback
    from core.video.stills import write_image

    folder = feedback.pairs_folder()
    for sub in ("inputs", "targets"):
        write_image(folder / sub / "p1.png", np.full((32, 32, 3), 100, np.uint8))
    job_id = queue.add("train", {"pairs": str(folder), "base": "sketch", "description": "mine"})
    assert queue.claim("w", cpu_slots=1).id == job_id
    card = "# sketch-ft-1@1: mine\n\n- precision fp32: int8 refused for speed: 0.81x fp32 speed at 1280x720\n"
    at = page("trainer").run()
    assert at.selectbox(key="train.job").format_func(job_id) == f"#{job_id} sketch → sketch-ft-N · running"
    queue.finish(job_id, "w", None, {"model": "sketch-ft-1@1", "card": card, "review": REVIEW})
    at.run()
    no_errors(at)
    assert at.selectbox(key="train.job").format_func(job_id) == f"#{job_id} sketch → sketch-ft-N · done"
    assert any(m.value.strip() == card.strip() for m in at.markdown), [m.value for m in at.markdown]
    gates = at.dataframe[0].value
    assert gates["gate"].tolist()[0] == "parity (torch vs ONNX Runtime)" and not at.get("json")


REVIEW = {"format": 1, "base": "sketch@3", "pair_count": 5, "held_out": ["h1", "h2"], "data_hash": "0" * 64,
          "scores": {"pairs": 2, "base": {"psnr_db": 21.5, "ssim": 0.71}, "model": {"psnr_db": 24.25, "ssim": 0.8}},
          "validation": {"first_val": 0.0338, "epoch1_val": 0.2298, "best_val": 0.0412, "best_epoch": 6,
                         "epochs_run": 9, "stopped_early": True},
          "parity": {"max_abs_error": 3e-6, "tol": 1e-4}, "int8": None, "fps": 2.4}


def candidate_of_sketch(studio_home: Path) -> str:
    """A real, runnable candidate ``sketch@4`` (the bundled teal network registered as a fine-tune of sketch
    would be) with its review record, card and two held-out pairs on disk; returns its spec."""
    from core.learn import feedback
    from core.ml import registry
    from core.video.stills import write_image

    folder = feedback.pairs_folder()
    rng = np.random.default_rng(3)
    for stem in ("h1", "h2", "t1"):
        write_image(folder / "inputs" / f"{stem}.png", rng.integers(0, 256, (90, 160, 3), dtype=np.uint8))
        write_image(folder / "targets" / f"{stem}.png", rng.integers(0, 256, (90, 160, 3), dtype=np.uint8))
    bundled = registry.entry("teal@1")
    src = studio_home / "src" / "cand.onnx"
    src.parent.mkdir(parents=True)
    for ext in (".onnx", ".json", ".npz"):
        src.with_suffix(ext).write_bytes(bundled.path.with_suffix(ext).read_bytes())
    e = registry.register_candidate(src, "sketch", card=lambda e: f"# {e.spec}: warmer\n\n- look: warmer\n",
                                    review={**REVIEW, "pairs": str(folder)}, style="warmer",
                                    lineage={"base": "sketch@3", "epochs": 9}, measured_fps=2.4)
    return e.spec


def test_trainer_reviews_a_candidate(studio_home: Path, queue) -> None:
    """Issue 22: a candidate is shown beside the active version (held-out scores, the gates as a table, sample
    frames through both), the render by name keeps the active one, and only Activate makes it live."""
    from core.ml import registry

    spec = candidate_of_sketch(studio_home)
    at = page("trainer").run()
    no_errors(at)
    assert registry.info("sketch").active == 3 and spec == "sketch@4"
    assert at.selectbox(key="train.review_spec").options == ["sketch@4"]
    assert any("**sketch@4** (warmer) beside **sketch@3**, the version `model=sketch` renders with" in m.value
               for m in at.markdown)
    tables = [d.value for d in at.dataframe]
    scores = next(t for t in tables if "held-out pairs" in t.columns)
    assert list(scores.columns) == ["held-out pairs", "base sketch@3", "candidate sketch@4"]
    assert scores.iloc[0].tolist() == ["PSNR (dB)", "21.50", "24.25"]
    gates = next(t for t in tables if "gate" in t.columns)
    assert list(gates.columns) == ["gate", "value", "threshold", "result"]
    assert dict(zip(gates["gate"], gates["result"], strict=True)) == {
        "parity (torch vs ONNX Runtime)": "pass", "int8": "not tried", "speed (1280x720, this machine)": "info",
        "validation loss": "fail", "held-out pairs (2, whole frames)": "pass"}
    assert any(c.value.startswith("first_val 0.0338 is the validation loss of the base's own weights (sketch@3), "
                                  "measured before the first step; epoch 1's 0.2298 is after one epoch")
               for c in at.caption)
    registry_table = next(t for t in tables if "model" in t.columns)
    assert dict(zip(registry_table["model"], registry_table["state"], strict=True))["sketch@4"] == "candidate"
    images = at.get("image")
    assert len(images) == 2 * 4  # two held-out pairs: input, active sketch@3, the candidate, the target
    assert not at.get("json")  # the gates are a table, not a JSON tree

    at.button(key="train.review.activate").click().run()
    no_errors(at)
    assert registry.info("sketch").active == 4
    assert at.success[0].value.startswith("active: sketch@4 (renders of model=sketch use it from now on; "
                                          "roll back returns to sketch@3)")
    at.selectbox(key="train.rollback_name").set_value("sketch").run()
    at.button(key="train.rollback").click().run()
    no_errors(at)
    assert registry.info("sketch").active == 3 and at.success[0].value == "active: sketch@3"
    assert not any(e.state == "candidate" for e in registry.info("sketch").versions)  # released for good


def test_trainer_discards_a_candidate(studio_home: Path, queue) -> None:
    from core.ml import registry

    spec = candidate_of_sketch(studio_home)
    at = page("trainer").run()
    at.button(key="train.review.discard").click().run()
    no_errors(at)
    e = registry.entry(spec)
    assert e.state == "rejected" and e.path.is_file() and registry.info("sketch").active == 3
    assert f"its files stay in {e.path.parent}" in at.success[0].value
    assert any(c.value.startswith("No candidate awaiting review") for c in at.caption)


def test_settings_preset_save_and_cleanup(studio_home: Path) -> None:
    from core.presets import load_preset

    at = page("settings").run()
    no_errors(at)
    assert at.tabs and [t.label for t in at.tabs] == ["Hardware", "Presets", "Folders", "Storage"]
    at.slider(key="set.e.balanced.crf").set_value(18)
    at.text_input(key="set.save_name").set_value("mine")
    at.button(key="set.save").click().run()
    no_errors(at)
    assert load_preset("mine").encoder.crf == 18
    at.text_input(key="set.save_name").set_value("bad name!")
    at.button(key="set.save").click().run()
    assert at.error and "bad name!" in at.error[0].value
    at.button(key="set.cleanup").click().run()
    assert not at.exception
    assert any("removed 0 items" in s.value for s in at.success)


def test_wipe() -> None:
    a, b = np.zeros((4, 10, 3), np.uint8), np.full((4, 10, 3), 9, np.uint8)
    out = wipe(a, b, 0.5, line=0)
    assert (out[:, :5] == 0).all() and (out[:, 5:] == 9).all()
    assert (a == 0).all() and (b == 9).all()  # inputs untouched
    assert (wipe(a, b, 0.0) == b).all() and (wipe(a, b, 1.0) == a).all()
    with pytest.raises(ValueError, match="one size"):
        wipe(a, b[:, :5], 0.5)


def test_epoch_records() -> None:
    class Ev:
        def __init__(self, message: str = "", data: dict | None = None) -> None:
            self.message, self.data = message, data

    events = [Ev("queued"), Ev(data={"event": "epoch", "epoch": 1, "train_loss": 0.5, "val_loss": 0.6}),
              Ev('{"epoch": 2, "train_loss": 0.4, "val_loss": 0.5}'), Ev("epoch 3/20  loss 0.3000  val 0.4000")]
    assert epoch_records(events) == [{"epoch": 1.0, "train_loss": 0.5, "val_loss": 0.6},
                                     {"epoch": 2.0, "train_loss": 0.4, "val_loss": 0.5},
                                     {"epoch": 3.0, "train_loss": 0.3, "val_loss": 0.4}]


def test_queue_page_finished_render(sample: Path, queue) -> None:
    from app.actions import queue_render
    from core.studio.worker import run_worker

    job_id = queue_render(queue, sample, "pencil", "speed", {}, workers=1)
    assert run_worker(cpu_slots=1, poll_s=0.1, once=True) == 1
    job = queue.get(job_id)
    assert job.state == "done", job.error
    at = page("queue").run()
    no_errors(at)
    assert at.get("video") and at.get("download_button")
    charts = at.get("plotly_chart")
    assert charts and "warping error" in charts[0].proto.spec and "SSIM to input" in charts[0].proto.spec
    assert any("frames measured" in m.value for m in at.markdown)
    assert any(c.value.startswith("The bottleneck is ") for c in at.caption)  # where the render's time went

    copy_id = queue_render(queue, sample, "none", "speed", {}, workers=1)  # the identity copy: not measured
    assert run_worker(cpu_slots=1, poll_s=0.1, once=True) == 1
    at = page("queue").run()  # opens on the newest job
    no_errors(at)
    assert at.selectbox(key="queue.job").value == copy_id
    assert any(c.value.startswith("No per-frame measures: this render took a per-pixel fast path")
               for c in at.caption), [c.value for c in at.caption]


def test_settings_cleanup_asks_first_and_deletes_only_what_it_listed(studio_home: Path) -> None:
    import os

    from core.studio import storage

    old = time.time() - 400 * 86400  # past the uploads' default retention (30 days)
    due = studio_home / "uploads" / "0123abcd" / "Old Take.mp4"
    due.parent.mkdir(parents=True)
    due.write_bytes(b"x" * 2**20)
    os.utime(due, (old, old))
    at = page("settings").run()
    no_errors(at)
    usage = next(d for d in at.dataframe if "kept for" in d.value.columns)  # one type per column: text
    assert list(usage.value["kept for"]) == ["30 days", "7 days", "forever"]
    at.button(key="set.cleanup").click().run()
    assert any("This deletes 1 item (1.0 MB)" in w.value for w in at.warning) and due.is_file()
    at.button(key="set.cleanup_cancel").click().run()
    assert not at.warning and due.is_file()
    at.button(key="set.cleanup").click().run()
    at.button(key="set.cleanup_confirm").click().run()
    no_errors(at)
    assert any("removed 1 item (1.0 MB)" in s.value for s in at.success) and not due.exists()
    assert not at.warning and storage.plan_cleanup().items == ()


def test_settings_saving_over_a_custom_preset_asks_first(studio_home: Path) -> None:
    from core.presets import load_preset

    at = page("settings").run()
    at.text_input(key="set.save_name").set_value("mine")
    at.button(key="set.save").click().run()
    assert load_preset("mine").encoder.crf != 18
    at.slider(key="set.e.balanced.crf").set_value(18).run()
    assert at.button(key="set.save").disabled  # "mine" exists: replacing it needs the box ticked
    at.checkbox(key="set.save_replace.mine").check().run()
    at.button(key="set.save").click().run()
    no_errors(at)
    assert load_preset("mine").encoder.crf == 18


def test_settings_render_on_a_cluster(studio_home: Path) -> None:
    """The executor setting: a bad URL is refused with a message and not saved; an unreachable cluster says
    so when tested; a good URL is saved for the queue worker. The decode setting beside it (without a GPU the
    page says the CPU would decode)."""
    from core.hardware import probe_gpus
    from core.studio import storage

    at = page("settings").run()
    at.text_input(key="set.executor").set_value("spark://a:1")
    at.button(key="set.executor_save").click().run()
    assert at.error and "expected 'local' or dask://HOST:PORT" in at.error[0].value
    assert storage.load_settings().executor == "local"
    at.text_input(key="set.executor").set_value("dask://127.0.0.1:9")
    at.button(key="set.executor_test").click().run()
    assert at.error and "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in at.error[0].value
    at.button(key="set.executor_save").click().run()
    assert not at.exception and storage.load_settings().executor == "dask://127.0.0.1:9"
    assert storage.load_settings().decode == "cpu"
    at.radio(key="set.decode").set_value("cuda").run()
    if not probe_gpus()[0]:
        assert any("renders here would decode on the CPU" in c.value for c in at.caption)
    at.button(key="set.decode_save").click().run()
    assert not at.exception and storage.load_settings().decode == "cuda"
    assert storage.load_settings().executor == "dask://127.0.0.1:9"  # the other setting kept


def test_settings_watch_folders_enable_and_launcher(studio_home: Path, tmp_path: Path) -> None:
    """The Folders tab turns the watchers on; the studio launcher then starts `cli watch` beside the worker."""
    from core.studio import watch
    from scripts.studio import watch_command

    drop = tmp_path / "drop"
    drop.mkdir()
    watch.save_watch_settings(watch.WatchSettings(folders=(watch.WatchFolder(folder=str(drop), style="pencil"),)))
    assert watch_command() is None  # configured but not enabled
    at = page("settings").run()
    no_errors(at)
    at.toggle(key="set.watch_on").set_value(True)
    at.button(key="set.save_watch").click().run()
    no_errors(at)
    cfg = watch.load_watch_settings()
    assert cfg.enabled and [(w.folder, w.style) for w in cfg.folders] == [(str(drop), "pencil")]
    assert watch_command()[-1] == "watch"


def test_propose_pair_never_offers_the_base_against_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """When no candidate keeps the style's floors, the Style Lab says so with the reasons (one line), rather
    than a pair of two equal variants."""
    from app import actions
    from core.errors import ConfigError
    from core.learn import autotune

    base = autotune.Candidate({"n_colors": 8}, 1.0)
    refused = [autotune.Candidate({"n_colors": n}, None, feasible=False,
                                  reason=f"outline density {n / 100:.2f} below the floor 0.05") for n in (2, 3)]
    result = autotune.TuneResult("cartoon", "grid", "metrics", refused, base, None, (0,))
    monkeypatch.setattr(autotune, "tune", lambda *a, **k: result)
    with pytest.raises(ConfigError, match=r"none of 2 cartoon candidates keeps the style's floors .*outline density"):
        actions.propose_pair("c.mp4", "cartoon", "balanced", 4)
    result.candidates.insert(0, autotune.Candidate({"n_colors": 6}, 0.8))
    assert actions.propose_pair("c.mp4", "cartoon", "balanced", 4) == {"a": {"n_colors": 6}, "b": {"n_colors": 8},
                                                                       "p_a": None}


def test_trainer_defaults_follow_the_base(studio_home: Path, queue) -> None:
    """Each base brings its own schedule (the per-pixel `look` net 150 epochs at 3e-3), unless the user has set
    the epochs themselves."""
    at = page("trainer").run()
    no_errors(at)
    at.selectbox(key="train.base").set_value("look").run()
    assert (at.number_input(key="train.epochs").value, at.number_input(key="train.lr").value) == (150, 3e-3)
    at.selectbox(key="train.base").set_value("compact").run()
    assert (at.number_input(key="train.epochs").value, at.number_input(key="train.lr").value) == (20, 1e-3)
    at.number_input(key="train.epochs").set_value(7).run()
    at.selectbox(key="train.base").set_value("look").run()
    assert at.number_input(key="train.epochs").value == 7  # the user's, kept
