"""The ``stages`` section: where a render's CPU time goes, the machine limit that gives, and how close the
default (pipelined) render comes to it.

A stage's cost is measured in a fresh process, one loop, tuned like a pool worker (its threads alone are
billed), beside every pair of renders rather than once: this machine's speed drifts by 10-20 % within
minutes, and each round's ratios are taken from figures measured a minute apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripts.bench.figures import STAGES
from scripts.bench.measure import ROOT, Bench, Run, cli_render, make_input, measure


def stages(bench: Bench) -> None:
    """Per classical style at 720p: the stages' CPU costs, the machine limit they give, and the render's fps
    on a shot of ``--stage-loops`` x the clip (30 s by default: a render's fixed start-up, ~0.5 s, is then a
    shot's share, not a third of a 1-second one) the default way (chunks prepared on several threads,
    ``--workers`` unset) and chunk-parallel (a chunk per core, ``--pipeline off``), each first in every other
    round, ``--repeat`` rounds, each with its own cost measurement (medians of each). The ratios are medians
    of each round's own ratios, their range printed and kept (``*_runs``): how far one round's reading can
    fall from another's."""
    import statistics

    from core.render.stages import bottleneck

    clips, tmp, home, cores, report = bench.clips, bench.tmp, bench.home, bench.cores, bench.report
    report["stages"] = {}
    n_shot = bench.frames * bench.stage_loops
    shot = make_input(tmp / "in_720p_shot.mp4", 1280, 720, bench.frames, loops=bench.stage_loops)
    print(f"\nstages, 720p, CPU ms per frame (one loop, {bench.frames} frames) -> machine limit = {cores} cores / sum; "
          f"renders of a {n_shot}-frame shot:")
    for style in [s for s in bench.styles if s in ("pencil", "cartoon", "comic", "cinematic")]:
        # the costs are measured beside each pair of renders, not once: this machine's speed drifts by 10-20 %
        # within minutes, and a limit taken in a slow (or fast) minute would skew every ratio against it
        measured: list[dict] = []
        runs: dict[str, list[Run]] = {"pipelined": [], "chunk-parallel": []}
        commands = {"pipelined": cli_render(shot, tmp / "st_p.mp4", style, 0, home),
                    "chunk-parallel": cli_render(shot, tmp / "st_c.mp4", style, cores, home, ["--pipeline", "off"])}
        for i in range(bench.repeat):
            measured.append(_stage_costs(clips[720], style))
            # every other round the other one first: a machine speeding up or slowing down over a round
            # then favours neither side of the ratio
            for kind in sorted(commands, reverse=i % 2 == 1):
                runs[kind].append(measure(commands[kind], n_shot))
        keys = {k for c in measured for k in c["busy"]}
        costs = {**measured[0], "busy": {k: statistics.median(c["busy"].get(k, 0.0) for c in measured) for k in keys}}
        total = _total_ms(costs)
        limit = cores / (total / 1000)
        cost_ms = part_ms(costs)
        fps = {k: statistics.median(r.fps for r in v) for k, v in runs.items()}
        b = bottleneck(costs)
        # each round's ratios from the figures measured beside each other (a minute apart), then their median:
        # this machine's speed drifts by 10-20 % over the section, a round's own figures share its minute
        of_limit_runs = [p.fps * _total_ms(c) / 1000 / cores for p, c in zip(runs["pipelined"], measured, strict=True)]
        vs_runs = [p.fps / q.fps for p, q in zip(runs["pipelined"], runs["chunk-parallel"], strict=True)]
        of_limit, vs = statistics.median(of_limit_runs), statistics.median(vs_runs)
        print(f"  {style:>9}: " + ", ".join(f"{k} {v:.1f}" for k, v in cost_ms.items()) + f" = {total:.1f} ms "
              f"-> limit {limit:.1f} fps; pipelined {fps['pipelined']:.1f} fps = {of_limit:.0%} of it "
              f"(rounds {min(of_limit_runs):.0%}-{max(of_limit_runs):.0%}; goal >= 90%: "
              f"{'met' if of_limit >= 0.9 else 'NOT met'}); chunk-parallel {fps['chunk-parallel']:.1f} fps -> "
              f"{vs:.2f}x (rounds {min(vs_runs):.2f}-{max(vs_runs):.2f}x; goal >= 1.0: "
              f"{'met' if vs >= 1.0 else 'NOT met'})")
        report["stages"][style] = {"cost_ms": cost_ms, "limit_fps": limit, "pipelined_fps": fps["pipelined"],
                                   "sequential_fps": fps["chunk-parallel"], "of_limit": of_limit,
                                   "pipelined_vs_sequential": vs, "of_limit_runs": of_limit_runs,
                                   "pipelined_vs_sequential_runs": vs_runs, "bottleneck": b.advice if b else "",
                                   "repeat": bench.repeat, "shot_frames": n_shot}


def part_ms(costs: dict) -> dict[str, float]:
    """CPU ms per frame of each part of a cost measurement (:data:`scripts.bench.figures.STAGES`); encode is the
    encoder's own share of its thread, without the metrics where they were measured there (a record without
    ``parts`` is from before they moved to the process thread: they ran on the encoder's)."""
    ms = {k: 1000 * v / costs["frames"] for k, v in costs["busy"].items()}
    out = {k: ms.get(k, 0.0) for k in STAGES}
    if costs.get("parts", {}).get("measure", "encode") == "encode":
        out["encode"] = ms.get("encode", 0.0) - ms.get("measure", 0.0)
    return out


def _total_ms(costs: dict) -> float:
    """CPU ms a frame of a one-loop cost measurement: its threads' busy time (the parts are inside them)."""
    return sum(1000 * costs["busy"].get(k, 0.0) / costs["frames"] for k in ("decode", "prepare", "process", "encode"))


def _stage_costs(clip: Path, style: str, tree: Path = ROOT) -> dict:
    """:func:`core.render.chunk.stage_costs` in a fresh process (this one's lingering threads would be billed),
    tuned like a pool worker beside others: OpenCV on one thread, glibc keeping freed buffers. ``tree``: the
    checkout whose code runs (another commit's worktree, for the ``profile`` section)."""
    code = ("import json, sys\n"
            "from core.render.spec import build_job\nfrom core.render.chunk import stage_costs\n"
            "from core.render.pool import tune_process\n"
            "tune_process(1)\n"
            "print(json.dumps(stage_costs(build_job(sys.argv[1], sys.argv[1] + '.costs.mp4', sys.argv[2]))))\n")
    out = subprocess.run([sys.executable, "-c", code, str(clip.absolute()), style], cwd=tree, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"stage costs of {style} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


