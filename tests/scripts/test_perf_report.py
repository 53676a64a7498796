"""The benchmark report -> README tables and HTML charts: exact figures, honest "(not met)", no invented rows."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from scripts.bench import report as perf_report


def sample_report() -> dict:
    """A realistic report as ``json.load`` returns it (worker counts are string keys); no ``dask`` section,
    the int8 target missed, no CUDA figures."""
    return {
        "cores": 2,
        "frames": 300,
        "source": "synthetic",
        "sections": {"identity": "2026-11-22", "lut": "2026-11-20", "styles": "2026-11-21"},
        "identity_vs_ffmpeg": {"ours_fps": 96.123, "ffmpeg_fps": 116.94, "ratio": 0.8219, "repeat": 3},
        "identity_vs_ffmpeg_3x": {"ours_fps": 115.49, "ffmpeg_fps": 111.51, "ratio": 1.0357, "repeat": 3},
        "lut": {"lut_only_fps": 71.08, "ffmpeg_lut3d_fps": 46.52, "lut_only_ratio": 1.5279,
                "full_look_fps": 31.71, "full_look_ratio": 0.6816},
        "speed": {"repeat": 3, "frames": 300, "quick": False, "ffmpeg": True,
                  "720p": {"none": {"fps": 100.0, "ratio": 0.83, "ffmpeg_fps": 120.0, "runs": [0.83], "busy": 0.8},
                           "pencil": {"fps": 37.0, "ratio": 0.3083, "ffmpeg_fps": 120.0, "runs": [0.3083], "busy": 0.9},
                           "cartoon": {"fps": 29.0, "ratio": 0.2417, "ffmpeg_fps": 121.0, "runs": [0.24], "busy": 0.9}},
                  "720p_speed": {"pencil": {"fps": 62.0, "ratio": 0.521, "ffmpeg_fps": 119.0, "runs": [0.52],
                                            "busy": 0.9}}},
        "profile": {"repeat": 3, "baseline": "0f9375d",
                    "styles": {"pencil": {"before": {"decode": 5.5, "stylize": 6.0, "motion": 6.6, "temporal": 11.7,
                                                     "measure": 3.4, "encode": 10.8},
                                          "after": {"decode": 2.6, "stylize": 5.2, "motion": 4.9, "temporal": 11.2,
                                                    "measure": 1.8, "encode": 10.7}}}},
        "workers": {"style": "cartoon", "1": {"fps": 14.02, "busy": 0.49}, "2": {"fps": 17.81, "busy": 0.871}},
        "memory": {"short_mib": 515.2, "long_mib": 523.4, "ratio": 1.0159},
        "styles": {
            "none": {"720p_fps": 89.04, "1080p_fps": 38.21, "720p_busy": 0.889},
            "pencil": {"720p_fps": 21.63, "1080p_fps": 11.07, "720p_busy": 0.871},
            "cinematic": {"720p_fps": 28.41, "1080p_fps": 13.33, "720p_busy": 0.912},
        },
        "stages": {
            "pencil": {"cost_ms": {"decode": 4.12, "encode": 9.87, "stylize": 30.55, "motion": 12.34,
                                   "temporal": 20.04, "measure": 5.51},
                       "limit_fps": 28.3, "pipelined_fps": 26.1, "sequential_fps": 18.6, "of_limit": 0.9223,
                       "pipelined_vs_sequential": 1.4032, "bottleneck": "stylize"},
            "cartoon": {"cost_ms": {"decode": 4.2, "encode": 10.1, "stylize": 52.3, "motion": 13.0,
                                    "temporal": 21.0, "measure": 5.6},
                        "limit_fps": 21.9, "pipelined_fps": 17.5, "sequential_fps": 18.2, "of_limit": 0.7991,
                        "pipelined_vs_sequential": 0.9615, "bottleneck": "stylize",
                        "of_limit_runs": [0.7991, 0.7412, 0.8813],
                        "pipelined_vs_sequential_runs": [0.9615, 1.02, 0.93]},
        },
        "neural": {"fps_720p": {"torch": 0.2181, "johnson": 0.4802, "compact": 1.7213, "int8": 2.0481},
                   "ort_vs_torch": 2.2017, "compact_vs_johnson": 3.6245, "int8_vs_fp32": 1.1899,
                   "int8_psnr_db": 39.47, "repeat": 3},
        "loop": {"render_cpu_ms": 93.51, "metrics_ms": 5.52, "metrics_ratio": 0.05903, "analysis_ms": 3.64,
                 "analysis_ratio": 0.03893, "preference_fit_500_s": 0.31,
                 "rate_pair_s": {"cartoon": 2.41, "pencil": 3.52},
                 "transfer": {"train": "a.mp4", "test": "b.mp4", "pairs": 36, "psnr_db": 31.74, "seconds": 157.2},
                 "flicker": {"cartoon": {"warping_ratio": 0.1012, "ssim": 0.9671},
                             "pencil": {"warping_ratio": 0.2391, "ssim": 0.9589}}},
        "studio": {"preview_1080p": {"pencil": {"first": 0.281, "scrub": 0.362},
                                     "cartoon": {"first": 1.371, "scrub": 0.468}},
                   "queue_page_200_s": 0.1213},
    }


def _tables(md: str) -> list[dict[str, list[str]]]:
    """Each Markdown table's rows by their first cell (the header row included)."""
    tables: list[dict[str, list[str]]] = []
    fresh = True
    for line in md.splitlines():
        if not line.startswith("|"):
            fresh = True
            continue
        if fresh:
            tables.append({})
            fresh = False
        if not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            tables[-1][cells[0]] = cells[1:]
    return tables


def _rows(md: str) -> dict[str, list[str]]:
    """The first (what | measured | target) table's rows by their first cell."""
    return _tables(md)[0]


def test_markdown_rows_have_the_report_figures() -> None:
    md = perf_report.markdown(sample_report())
    assert md.splitlines()[0] == ("Generated by `python -m scripts.bench` from `docs/perf/benchmark.json` "
                                  "(measured 2026-11-20 to 2026-11-22, 2 cores, inputs: synthetic).")
    rows = _rows(md)
    assert rows["identity render vs `ffmpeg -c:v libx264 -preset veryfast -crf 20`, 720p, 300 frames (medians of 3)"] \
        == ["96.1 vs 116.9 fps = **0.82x**", ">= 0.95x (not met)"]
    assert rows["the same on a 900-frame clip (start-up costs amortised; medians of 3)"] == \
        ["115.5 vs 111.5 fps = **1.04x**", ">= 1.0x"]
    assert rows["pencil / cartoon vs `ffmpeg -c:v libx264 -preset veryfast -crf 20` of the same clip, balanced "
                "preset, 720p (whole renders; medians of 3 rounds)"] == \
        ["**0.31x** / **0.24x** (ffmpeg 120.0 fps)", ">= 0.30x (not met)"]
    assert rows["pencil vs `ffmpeg -c:v libx264 -preset veryfast -crf 20` of the same clip, speed preset, 720p "
                "(whole renders; medians of 3 rounds)"] == ["**0.52x** (ffmpeg 119.0 fps)", ">= 0.5x"]
    assert rows["cinematic LUT-only vs `ffmpeg -vf lut3d=...:interp=tetrahedral` + x264 veryfast, 720p"] == \
        ["71.1 vs 46.5 fps = **1.53x**", ">= 1.5x"]
    assert rows["cinematic full look (LUT + curve + bloom + grain + vignette) vs the same ffmpeg figure"] == \
        ["31.7 fps = **0.68x**", ">= 0.5x"]
    assert rows["cartoon 720p, one loop per chunk, CPU time / (wall x 2 cores)"] == ["**0.87**", ">= 0.85"]
    assert rows["cartoon 720p, one loop per chunk, 2 chunks at once vs 1"] == \
        ["17.8 vs 14.0 fps = **1.27x**", ">= 1.0x"]
    assert rows["peak RSS of the render's process tree, 10x longer clip vs short (640x360, pencil)"] == \
        ["523 vs 515 MiB = **1.02x**", "<= 1.1x"]
    assert rows["neural: Johnson net, ONNX Runtime fp32 vs torch eager, 720p"] == \
        ["0.48 vs 0.22 fps = **2.20x**", ">= 1.3x"]
    assert rows["neural: compact (starter) net vs Johnson, both ORT fp32, 720p"] == \
        ["1.72 vs 0.48 fps = **3.62x**", ">= 3x"]
    assert rows["neural: compact int8 (static QDQ, per-channel) vs fp32"] == \
        ["**1.19x** at 39.5 dB PSNR", ">= 1.5x at >= 32 dB (not met)"]
    assert rows["neural: CUDA EP 1080p with IO binding"] == ["not measured: no GPU", ""]
    assert rows["metrics while rendering (the render's default sampling) vs a 720p cartoon render, CPU per frame"] \
        == ["5.5 vs 93.5 ms = **5.9%**", "<= 15%"]
    assert rows["shot analysis (every 4th frame) vs the same render"] == ["3.6 ms = **3.9%**", "<= 10%"]
    assert rows["Style Lab pair on motion at 720p (two 1 s clips rendered, measured, side by side), cartoon / pencil"] \
        == ["**2.41 / 3.52 s**", "<= 3 s (not met)"]
    assert rows["preference model fit on 500 ratings (model selection by cross-validation included)"] == \
        ["**0.31 s**", "<= 2 s"]
    assert rows["fine-tune transfer: a LUT look learnt from 36 frames of a.mp4 (`look` net, default schedule), on "
                "b.mp4"] == ["**31.74 dB** in 157 s", ">= 28 dB within 5 min"]
    assert rows["flicker: flow-stabilised warping error vs per-frame, real clip, cartoon / pencil"] == \
        ["**0.10x / 0.24x** at SSIM 0.967 / 0.959", "<= 0.25x at >= 0.95"]
    assert rows["one-frame preview, 1080p, pencil / cartoon (first call; scrubbing)"] == \
        ["0.28 / **1.37** s; 0.36-0.47 s", "<= 1 s (not met)"]
    assert rows["Batch queue page with 200 jobs, AppTest"] == ["**0.12 s**", "<= 2 s"]

    profile = _tables(md)[3]
    assert profile["pencil, before (0f9375d)"] == ["5.5", "6.0", "6.6", "11.7", "3.4", "10.8", "**44.0**"]
    assert profile["pencil, after"] == ["2.6", "5.2", "4.9", "11.2", "1.8", "10.7", "**36.4**"]
    assert "medians of 3 rounds, in one run on one machine" in md

    styles = _tables(md)[1]
    assert styles == {"style": ["720p fps", "1080p fps", "cores busy (720p)"], "none": ["89.0", "38.2", "0.89"],
                      "pencil": ["21.6", "11.1", "0.87"],
                      "cinematic (default look: curve, bloom, grain, vignette)": ["28.4", "13.3", "0.91"]}

    stage_rows = [line for line in md.splitlines() if line.startswith(("| pencil | 4.1", "| cartoon | 4.2"))]
    assert stage_rows == [
        "| pencil | 4.1 | 30.6 | 12.3 | 20.0 | 5.5 | 9.9 | 28.3 | 26.1 (92.2%) | 18.6 (default 1.40x) | stylize |",
        "| cartoon | 4.2 | 52.3 | 13.0 | 21.0 | 5.6 | 10.1 | 21.9 | 17.5 (79.9%; rounds 74.1%-88.1%) (not met) | "
        "18.2 (default 0.96x; rounds 0.93x-1.02x) (not met) | stylize |",
    ]
    assert "| style | decode | stylize | motion | temporal | measure | encode (CPU ms per frame) | " \
           "machine limit fps | default (pipelined) fps (of limit) | chunk-parallel fps | " \
           "bottleneck (from the stage costs) |" in md
    # "(not met)" exactly where a target is missed: identity, int8, preview, the cartoon stage's two, and the
    # Style Lab pair (pencil's 3.52 s)
    assert md.count("(not met)") == 7


def test_absent_sections_give_no_rows_and_no_invented_figures() -> None:
    md = perf_report.markdown(sample_report())
    assert "Dask" not in md  # the sample has no dask section

    report = sample_report()
    report["dask"] = {"style": "pencil", "workers": 2, "local_fps": 21.0, "dask_fps": 19.95, "ratio": 0.95}
    report["neural"]["cuda_1080p_fps"] = {"johnson": 41.23, "compact": 120.4}
    rows = _rows(perf_report.markdown(report))
    assert rows["pencil 720p on Dask (2 workers) vs the local process pool"] == \
        ["19.9 vs 21.0 fps = **0.95x**", ">= 0.9x"]
    assert rows["neural: CUDA EP 1080p with IO binding"] == ["Johnson 41.2 fps, compact 120.4 fps", ""]

    report["gpu"] = {"skipped": "no NVIDIA GPU (NVML: Driver Not Loaded)"}
    skipped = _rows(perf_report.markdown(report))["GPU: neural (bundled sketch model) 1080p render; h264_nvenc vs "
                                                   "libx264"]
    assert skipped == ["not measured: no NVIDIA GPU (NVML: Driver Not Loaded)", ""]
    report["gpu"] = {"device": "NVIDIA H100 80GB HBM3", "neural_1080p_fps": 61.23, "neural_gpu_busy": 0.874,
                     "encode_1080p_fps": {"h264_nvenc": 240.0, "libx264": 40.0}, "repeat": 3}
    rows = _rows(perf_report.markdown(report))
    assert rows["GPU (NVIDIA H100 80GB HBM3): neural (bundled sketch model) 1080p render, CUDA EP, frames "
                "batched"] == ["**61.2 fps**, GPU busy 87.4% (NVML)", ""]
    assert rows["GPU (NVIDIA H100 80GB HBM3): identity render h264_nvenc vs libx264, 1080p"] == \
        ["240.0 vs 40.0 fps = **6.00x**", ""]
    report["gpu"] = None

    for key in ("speed", "profile", "lut", "workers", "memory", "styles", "stages", "loop", "studio"):
        report[key] = None
    report["neural"] = None
    report["identity_vs_ffmpeg"] = {"ours_fps": 95.0, "ffmpeg_fps": None, "ratio": None}
    del report["identity_vs_ffmpeg_3x"]
    md = perf_report.markdown(report)
    rows = _rows(md)
    assert set(rows) == {"what", "identity render vs `ffmpeg -c:v libx264 -preset veryfast -crf 20`, 720p, "
                                 "300 frames", "pencil 720p on Dask (2 workers) vs the local process pool"}
    assert rows["identity render vs `ffmpeg -c:v libx264 -preset veryfast -crf 20`, 720p, 300 frames"] == \
        ["95.0 fps (no `ffmpeg` on PATH: no ratio)", ">= 0.95x (not measured)"]
    for absent in ("neural", "CUDA", "720p fps", "decode", "RSS", "preview", "flicker", "LUT"):
        assert absent not in md

    assert perf_report.markdown({}) == "Generated by `python -m scripts.bench` from `docs/perf/benchmark.json`.\n"
    one_day = perf_report.markdown({"cores": 16, "sections": {"identity": "2026-11-22"}, "source": "/x/clip.mp4"})
    assert "(measured 2026-11-22, 16 cores, inputs: `/x/clip.mp4`)." in one_day


def test_markdown_takes_int_worker_keys_and_a_missing_style() -> None:
    """The benchmark's dict before a JSON round trip has int worker counts."""
    report = {"cores": 4, "workers": {1: {"fps": 10.0, "busy": 0.24}, 4: {"fps": 9.0, "busy": 0.8}}}
    rows = _rows(perf_report.markdown(report))
    assert rows["720p, one loop per chunk, CPU time / (wall x 4 cores)"] == ["**0.80**", ">= 0.85 (not met)"]
    assert rows["720p, one loop per chunk, 4 chunks at once vs 1"] == \
        ["9.0 vs 10.0 fps = **0.90x**", ">= 1.0x (not met)"]


def test_html_is_self_contained_with_one_div_per_figure() -> None:
    page = perf_report.html(sample_report())
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Video Producer benchmark</title>" in page
    assert "2 cores" in page and "2026-11-20 to 2026-11-22" in page
    # styles, stage costs, stage fps, ratios vs targets
    assert page.count('class="plotly-graph-div"') == 4
    for div_id in ("perf-styles", "perf-stage-cost", "perf-stage-fps", "perf-ratios"):
        assert f'id="{div_id}"' in page
    assert page.count("* plotly.js v") == 1  # the bundle, inline, once
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing fetched: no CDN, no http script
    assert 'src="https://cdn.plot.ly' not in page
    assert page == perf_report.html(sample_report())  # deterministic


def test_html_skips_figures_of_missing_sections() -> None:
    report = sample_report()
    report["styles"] = None
    del report["stages"]
    page = perf_report.html(report)
    assert page.count('class="plotly-graph-div"') == 1
    assert 'id="perf-ratios"' in page and page.count("* plotly.js v") == 1
    empty = perf_report.html({})
    assert 'class="plotly-graph-div"' not in empty and "plotly.js v" not in empty


README = """# Video Producer

## Performance

Some prose that stays.

<!-- perf:start -->
| old | table |
|---|---|
<!-- perf:end -->

Prose after the tables.
"""


def test_update_readme_replaces_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    report = sample_report()
    assert perf_report.update_readme(readme, report) is True
    text = readme.read_text()
    before, rest = text.split("<!-- perf:start -->\n")
    inside, after = rest.split("<!-- perf:end -->\n")
    assert before == README.split("<!-- perf:start -->\n")[0]
    assert after == README.split("<!-- perf:end -->\n")[1]
    assert inside == "\n" + perf_report.markdown(report) + "\n"
    assert "| old | table |" not in text
    assert perf_report.update_readme(readme, report) is False
    assert readme.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temp file left behind

    changed = copy.deepcopy(report)
    changed["memory"]["ratio"] = 1.2
    assert perf_report.update_readme(readme, changed) is True
    assert "**1.20x** | <= 1.1x (not met)" in readme.read_text()


def test_update_readme_without_markers_raises(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n<!-- perf:end -->\n")
    with pytest.raises(ValueError, match=re.escape(str(readme))):
        perf_report.update_readme(readme, sample_report())
    assert readme.read_text() == "# no markers\n<!-- perf:end -->\n"


def test_main_writes_html_and_readme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "benchmark.json"
    src.write_text(json.dumps(sample_report()))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    out = tmp_path / "perf.html"
    assert perf_report.main([str(src), "--html", str(out), "--readme", str(readme)]) == 0
    assert out.read_text().count('class="plotly-graph-div"') == 4
    assert perf_report.markdown(sample_report()) in readme.read_text()
    assert perf_report.main([str(src)]) == 0
    assert capsys.readouterr().out.endswith(perf_report.markdown(sample_report()))


@pytest.mark.parametrize("case", ["missing", "not_json", "not_object", "no_markers"])
def test_main_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               case: str) -> None:
    src = tmp_path / "benchmark.json"
    argv = [str(src)]
    if case == "not_json":
        src.write_text("{nope")
    elif case == "not_object":
        src.write_text("[1, 2]")
    elif case == "no_markers":
        src.write_text("{}")
        (tmp_path / "README.md").write_text("# nothing\n")
        argv += ["--readme", str(tmp_path / "README.md")]
    assert perf_report.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert err.startswith("python -m scripts.bench.report: error: ")
    assert (str(src) if case != "no_markers" else "README.md") in err


def test_neural_flicker_rows_per_model() -> None:
    report = sample_report()
    report["neural_flicker"] = {"clip": "c.mp4", "frames": 24, "width": 320, "models": {
        "sketch": {"per_frame": 2.1e-5, "stable": 9.6e-6, "warping_ratio": 0.45, "ssim": 0.999, "third_party": False},
        "sketch at the preset's luma 0.42": {"per_frame": 2.1e-5, "stable": 1.0e-5, "warping_ratio": 0.47,
                                             "ssim": 0.998, "third_party": False, "reference": True},
        "teal": {"per_frame": 2.1e-5, "stable": 3.8e-6, "warping_ratio": 0.181, "ssim": 0.996, "third_party": False},
        "wml_candy": {"per_frame": 0.00646, "stable": 0.00159, "warping_ratio": 0.246, "ssim": 0.967,
                      "third_party": True},
        "wml_candy on b.mp4": {"per_frame": 0.006, "stable": 0.0014, "warping_ratio": 0.233, "ssim": 0.918,
                               "third_party": True, "clip": "b.mp4", "mean_hold": 0.456},
        "broken": {"per_frame": None}}}
    rows = _rows(perf_report.markdown(report))
    where = "c.mp4, 24 frames at 320 px"
    assert rows[f"flicker: neural temporal mode, model sketch, {where}"] == \
        ["2.10e-05 -> 9.60e-06 = **0.45x** at SSIM 0.999", "<= 0.3x at >= 0.95 (bundled) (not met)"]
    assert rows[f"flicker: neural temporal mode, model sketch at the preset's luma 0.42, {where}"] == \
        ["2.10e-05 -> 1.00e-05 = **0.47x** at SSIM 0.998", "(for comparison)"]
    assert rows[f"flicker: neural temporal mode, model teal, {where}"] == \
        ["2.10e-05 -> 3.80e-06 = **0.18x** at SSIM 0.996", "<= 0.3x at >= 0.95 (bundled)"]
    assert rows[f"flicker: neural temporal mode, model wml_candy, {where}"] == \
        ["6.46e-03 -> 1.59e-03 = **0.25x** at SSIM 0.967", "<= 0.25x at >= 0.90 (third-party)"]
    assert rows["flicker: neural temporal mode, model wml_candy, b.mp4, 24 frames at 320 px"] == \
        ["6.00e-03 -> 1.40e-03 = **0.23x** at SSIM 0.918, luma hold 0.46 mean", "<= 0.25x at >= 0.90 (third-party)"]
    assert not any("broken" in k for k in rows)


def test_bundled_rows_per_model() -> None:
    report = sample_report()
    report["bundled"] = {"source": "held-out clips", "frames": 12, "models": {
        "teal": {"version": 2, "teacher": "cinematic", "psnr_db": 42.69, "sharpness_vs_teacher": 1.01,
                 "sharpness_vs_input": 1.19, "fps_720p": 2.53, "met": True},
        "sketch": {"version": 2, "teacher": "pencil", "psnr_db": 22.2, "sharpness_vs_teacher": 0.3,
                   "sharpness_vs_input": 1.67, "fps_720p": 2.69, "met": False},
        "broken": {"version": 1, "psnr_db": None}}}
    rows = _rows(perf_report.markdown(report))
    assert rows["bundled model teal@2 vs its teacher (cinematic), 12 held-out frames"] == \
        ["**42.7 dB**, sharpness 1.01x teacher / 1.19x input, 2.53 fps 720p", ">= 34 dB, >= 0.9x input, >= 1.5 fps"]
    assert rows["bundled model sketch@2 vs its teacher (pencil), 12 held-out frames"][1] == \
        ">= 28 dB, 0.5-2x teacher, >= 1.5 fps (not met)"
    assert not any("broken" in k for k in rows)
