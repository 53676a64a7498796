"""The ``speed`` section: every style's whole render against FFmpeg transcoding the same clip, as ratios.

A user's first question of a renderer is how it compares with the tool they already have, so each figure
here is a ratio to ``ffmpeg -i IN -c:v libx264 -preset veryfast -crf 20 OUT`` on the same clip, measured
beside it: each round runs the two back to back, the other one first every other round (this machine's
speed drifts by 10-20 % within minutes), and a ratio is the median of the rounds' own ratios. Renders are
whole CLI runs, start-up included, with the balanced preset; the speed preset's row renders each classical
style with ``--preset speed``. The per-style fps and cores-busy figures of the README's style table come
from the same runs (the median round's).

``--quick`` (CI) renders fewer frames, once, and publishes nothing: start-up is then a larger share of each
render, so its ratios read lower than a full run's; it shows the section works and prints its ratios.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from scripts.bench.figures import SPEED_CLASSICAL, SPEED_PRESET
from scripts.bench.measure import Bench, Run, cli_render, measure

#: the styles the classical goal (and the speed preset's) is about
CLASSICAL = ("pencil", "cartoon", "comic", "cinematic")


def ffmpeg_transcode(ffmpeg: str, src: Path, out: Path) -> list[str]:
    """FFmpeg's own transcode of the clip, the yardstick of every ratio here."""
    return [ffmpeg, "-y", "-v", "error", "-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
            "-an", str(out)]


def _rounds(ours: list[str], theirs: list[str] | None, frames: int, repeat: int) -> dict:
    """``repeat`` rounds of our render beside FFmpeg's transcode (the order alternating); the median round's
    figures and every round's ratio."""
    runs: list[tuple[Run, Run | None]] = []
    for i in range(repeat):
        pair: dict[str, Run | None] = {"ours": None, "theirs": None}
        order = ["ours", "theirs"] if i % 2 == 0 else ["theirs", "ours"]
        for side in order:
            cmd = ours if side == "ours" else theirs
            if cmd is not None:
                pair[side] = measure(cmd, frames)
        runs.append((pair["ours"], pair["theirs"]))  # type: ignore[arg-type]
    ratios = [o.fps / t.fps for o, t in runs if t is not None]
    mid = sorted(runs, key=lambda r: r[0].fps)[len(runs) // 2][0]
    out = {"fps": mid.fps, "busy_run": mid}
    if ratios:
        out.update(ratio=statistics.median(ratios), runs=ratios,
                   ffmpeg_fps=statistics.median(t.fps for _, t in runs if t is not None))
    return out


def speed(bench: Bench) -> None:
    """Each style (``--styles``) at 720p and 1080p, balanced preset, and each classical style with the speed
    preset at 720p, against FFmpeg's transcode of the same clip."""
    tmp, home, cores, report = bench.tmp, bench.home, bench.cores, bench.report
    ffmpeg = shutil.which("ffmpeg")
    heights = (720,) if bench.quick else (720, 1080)
    sec: dict = {"repeat": bench.repeat, "frames": bench.frames, "quick": bench.quick, "ffmpeg": bool(ffmpeg)}
    styles: dict = {}
    print(f"\nspeed: whole renders vs `ffmpeg -c:v libx264 -preset veryfast -crf 20` of the same clip "
          f"({bench.frames} frames, {bench.repeat} round(s), ratio = median of the rounds')"
          + ("" if ffmpeg else "; no ffmpeg binary on PATH, so no ratios (apt install ffmpeg)"))
    jobs = [(s, h, "balanced") for h in heights for s in bench.styles]
    jobs += [(s, 720, "speed") for s in bench.styles if s in CLASSICAL]
    for style, h, preset in jobs:
        clip = bench.clips[h]
        ours = cli_render(clip, tmp / f"speed_{style}_{h}.mp4", style, 0, home, ["--preset", preset])
        theirs = ffmpeg_transcode(ffmpeg, clip, tmp / f"speed_ff_{h}.mp4") if ffmpeg else None
        got = _rounds(ours, theirs, bench.frames, bench.repeat)
        busy = got.pop("busy_run").busy(cores)
        key = f"{h}p" if preset == "balanced" else f"{h}p_{preset}"
        sec.setdefault(key, {})[style] = {**got, "busy": busy}
        if preset == "balanced":
            styles.setdefault(style, {})[f"{h}p_fps"] = got["fps"]
            if h == 720:
                styles[style]["720p_busy"] = busy
        goal = (SPEED_PRESET if preset == "speed" else SPEED_CLASSICAL if style in CLASSICAL else None)
        ratio = got.get("ratio")
        verdict = ("" if ratio is None or goal is None
                   else f" (goal {goal.text}: {'met' if goal.met(ratio) else 'NOT met'})")
        print(f"  {style:>9} {h}p {preset:>8}: {got['fps']:6.1f} fps"
              + (f" vs ffmpeg {got['ffmpeg_fps']:6.1f} fps -> {ratio:.2f}x" if ratio is not None else "")
              + verdict)
    report["speed"] = sec
    if not bench.quick:
        report["styles"] = styles
