"""Sections that time whole CLI renders: the engine against the ffmpeg CLI, and against itself.

Each runs ``python -m scripts.cli render`` as a user would, start-up included, and measures the process
tree from outside (:func:`scripts.bench.measure.measure`): identity and LUT renders vs ffmpeg doing the
same transcode, chunk-parallel scaling, peak memory vs clip length, and a Dask cluster vs
the local pool. Where two commands are compared they alternate, so a machine speeding up or slowing down
favours neither.
"""

from __future__ import annotations

import shutil

from scripts.bench.figures import IDENTITY, IDENTITY_LONG
from scripts.bench.measure import ROOT, Bench, cli_render, make_input, measure, median_pair
from scripts.bench.speed import ffmpeg_transcode


def identity(bench: Bench) -> None:
    """Identity render vs the ffmpeg CLI doing the same transcode (medians of ``--repeat`` alternating runs)."""
    clips, tmp, home, cores, report = bench.clips, bench.tmp, bench.home, bench.cores, bench.report
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        ident = measure(cli_render(clips[720], tmp / "id.mp4", "none", cores, home), bench.frames)
        print(f"identity 720p: {ident.fps:.1f} fps; no ffmpeg binary on PATH, so no ratio (apt install ffmpeg)")
        report["identity_vs_ffmpeg"] = {"ours_fps": ident.fps, "ffmpeg_fps": None, "ratio": None}
        return

    long_clip = make_input(tmp / "in_720p_x3.mp4", 1280, 720, bench.frames, loops=3)
    for clip, n, key in ((clips[720], bench.frames, "identity_vs_ffmpeg"),
                         (long_clip, 3 * bench.frames, "identity_vs_ffmpeg_3x")):
        ours, theirs = median_pair(cli_render(clip, tmp / "id.mp4", "none", cores, home),
                                   ffmpeg_transcode(ffmpeg, clip, tmp / "ff.mp4"), n, bench.repeat)
        ratio = ours.fps / theirs.fps
        goal = IDENTITY if key == "identity_vs_ffmpeg" else IDENTITY_LONG
        note = f" (goal {goal.text}: {'met' if goal.met(ratio) else 'NOT met'})"
        print(f"identity 720p, {n} frames: {ours.fps:.1f} fps vs ffmpeg CLI {theirs.fps:.1f} fps -> {ratio:.2f}x"
              f"{note}; medians of {bench.repeat}")
        report[key] = {"ours_fps": ours.fps, "ffmpeg_fps": theirs.fps, "ratio": ratio, "repeat": bench.repeat}


def lut(bench: Bench) -> None:
    """Cinematic LUT-only and full look vs ffmpeg's lut3d filter (tetrahedral) + x264 veryfast."""
    clips, tmp, home, cores, report = bench.clips, bench.tmp, bench.home, bench.cores, bench.report
    ffmpeg = shutil.which("ffmpeg")
    lut = ROOT / "luts" / "teal_orange.cube"
    clip = clips[720]
    lut_only = ["--set", f"lut={lut}", "--set", "curve=0", "--set", "bloom=0", "--set", "grain=0",
                "--set", "vignette=0"]
    full = ["--set", f"lut={lut}"]
    # bake (and cache) both grade tables first: production renders read the cache too
    for extra in (lut_only, full):
        measure(cli_render(clips["tiny"], tmp / "warm.mp4", "cinematic", cores, home, extra), 1)
    if not ffmpeg:
        r = measure(cli_render(clip, tmp / "lut.mp4", "cinematic", cores, home, lut_only), bench.frames)
        print(f"cinematic LUT-only 720p: {r.fps:.1f} fps; no ffmpeg binary on PATH, so no ratio")
        report["lut"] = {"lut_only_fps": r.fps}
        return
    ff_cmd = [ffmpeg, "-y", "-v", "error", "-i", str(clip), "-vf", f"lut3d=file={lut}:interp=tetrahedral",
              "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-an", str(tmp / "ff_lut.mp4")]
    ours, theirs = median_pair(cli_render(clip, tmp / "lut.mp4", "cinematic", cores, home, lut_only), ff_cmd,
                               bench.frames, bench.repeat)
    look = measure(cli_render(clip, tmp / "look.mp4", "cinematic", cores, home, full), bench.frames)
    print(f"cinematic LUT-only 720p: {ours.fps:.1f} fps vs ffmpeg lut3d + x264 {theirs.fps:.1f} fps -> "
          f"{ours.fps / theirs.fps:.2f}x (target >= 1.5)")
    print(f"cinematic full look 720p: {look.fps:.1f} fps -> {look.fps / theirs.fps:.2f}x of ffmpeg lut3d "
          "(target >= 0.5)")
    report["lut"] = {"lut_only_fps": ours.fps, "ffmpeg_lut3d_fps": theirs.fps, "lut_only_ratio": ours.fps / theirs.fps,
                     "full_look_fps": look.fps, "full_look_ratio": look.fps / theirs.fps}


def workers(bench: Bench) -> None:
    """Chunk-parallel scaling (one loop per chunk, ``--pipeline off``): 2 chunks at once keep the cores busy and
    are never slower than 1."""
    clips, tmp, home, cores, report = bench.clips, bench.tmp, bench.home, bench.cores, bench.report
    style = "cartoon" if "cartoon" in bench.styles else bench.styles[-1]
    by_workers = {}
    for n in sorted({1, cores}):
        by_workers[n] = measure(cli_render(clips[720], tmp / f"w{n}.mp4", style, n, home, ["--pipeline", "off"]),
                                bench.frames)
        print(f"{style} 720p, {n} worker(s): {by_workers[n].fps:.1f} fps, cores busy "
              f"{by_workers[n].busy(cores):.2f}")
    full = by_workers[cores]
    print(f"{style} 720p: busy {full.busy(cores):.2f} of {cores} cores (target >= 0.85); "
          f"{cores} vs 1 worker {full.fps / by_workers[1].fps:.2f}x (target >= 1.0)")
    report["workers"] = {"style": style, **{str(n): {"fps": r.fps, "busy": r.busy(cores)}
                                             for n, r in by_workers.items()}}


def memory(bench: Bench) -> None:
    """Peak memory does not grow with clip length."""
    tmp, home, report = bench.tmp, bench.home, bench.report
    short = make_input(tmp / "short.mp4", 640, 360, min(bench.frames, 300))
    long_ = make_input(tmp / "long.mp4", 640, 360, min(bench.frames, 300), loops=10)
    m_short = measure(cli_render(short, tmp / "ms.mp4", "pencil", 0, home), min(bench.frames, 300))
    m_long = measure(cli_render(long_, tmp / "ml.mp4", "pencil", 0, home), 10 * min(bench.frames, 300))
    mem_ratio = m_long.peak_rss / m_short.peak_rss
    print(f"peak RSS (process tree) 10x longer clip: {m_long.peak_rss / 2**20:.0f} MiB vs "
          f"{m_short.peak_rss / 2**20:.0f} MiB -> {mem_ratio:.2f}x (target <= 1.1)")
    report["memory"] = {"short_mib": m_short.peak_rss / 2**20, "long_mib": m_long.peak_rss / 2**20,
                        "ratio": mem_ratio}


def dask(bench: Bench) -> None:
    """A render on a 2-worker ``distributed.LocalCluster`` (processes, one thread each) against the local pool
    running the same 2 chunks at once, alternating ``--repeat`` times (medians); goal >= 0.9x."""
    import statistics

    try:
        import distributed
    except ImportError:
        print("dask: skipped: distributed is not installed (requirements-base.txt)")
        return
    clips, tmp, home, report = bench.clips, bench.tmp, bench.home, bench.report
    style, n = "cartoon", 2
    with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        url = cluster.scheduler_address.replace("tcp://", "dask://")
        src = clips[720].absolute()
        measure(cli_render(src, tmp / "dask_warm.mp4", style, n, home, ["--executor", url]), bench.frames)  # imports
        local, dask = [], []
        for _ in range(bench.repeat):
            local.append(measure(cli_render(src, tmp / "dl.mp4", style, n, home), bench.frames))
            dask.append(measure(cli_render(src, tmp / "dd.mp4", style, n, home, ["--executor", url]), bench.frames))
    lf, df = statistics.median(r.fps for r in local), statistics.median(r.fps for r in dask)
    print(f"\ndask: {style} 720p on a {n}-worker LocalCluster {df:.1f} fps vs the local pool (same {n} chunks at once) "
          f"{lf:.1f} fps -> {df / lf:.2f}x (goal >= 0.9: {'met' if df / lf >= 0.9 else 'NOT met'}); medians of "
          f"{bench.repeat}")
    report["dask"] = {"style": style, "workers": n, "local_fps": lf, "dask_fps": df, "ratio": df / lf,
                      "repeat": bench.repeat}

