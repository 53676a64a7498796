"""The benchmark: speed and memory targets, measured side by side in one run, and the report that turns
them into the README's performance tables.

``python -m scripts.bench [--frames 300] [--only SECTIONS]`` measures; ``python -m scripts.bench.report
docs/perf/benchmark.json --readme README.md`` redoes only the tables. Timings on shared machines are noisy:
compare the ratios, measured in the same run, not absolute numbers across runs.

Targets (render engine):
  * identity render at 1280x720, libx264 veryfast crf 20 >= 0.95x the fps of the ffmpeg CLI doing the
    same transcode on a ``--frames`` clip, >= 1.0x on one 3x as long (skipped, and said so, when no
    ``ffmpeg`` binary is on PATH);
  * speed: every classical style, balanced preset, at 720p and 1080p >= 0.30x the fps of that same ffmpeg
    transcode of the clip, and with the speed preset >= 0.5x (whole CLI runs; ``--quick``, CI's reduced
    form, renders fewer frames at 720p once and only prints);
  * a classical style keeps every core busy: CPU time / (wall x cores) >= 0.85, and 2 workers are
    never slower than 1;
  * peak memory (RSS summed over the render's process tree) of a 10x longer clip <= 1.1x the short one;
  * stages: a classical style at 720p reaches >= 90 % of the machine limit computed from its own per-stage
    CPU costs (cores / CPU seconds per frame of decode + stylize + temporal + measure + encode), and the
    pipelined default (a chunk's frames prepared on several threads) is not slower than chunk-parallel
    (a chunk per core, one loop each);
  * dask: a render on a 2-worker ``LocalCluster`` >= 0.9x the local pool with the same 2 chunks at once;
  * gpu (only where NVML sees an NVIDIA GPU): the neural style's 1080p render fps with the GPU's utilisation
    meanwhile, and h264_nvenc vs libx264 encode fps (reported, no fixed target);
  * neural_flicker (only where ../shared has the clip): the neural temporal mode's warping error vs the
    per-frame render, per model: third-party models <= 0.25x at SSIM >= 0.90, bundled ones <= 0.3x at >= 0.95.

Where things live (the sections run in the order of :data:`scripts.bench.run.SECTIONS`):
  * :mod:`.run`: the command: options, the section registry, running the chosen sections, publishing;
  * :mod:`.measure`: what every section shares: a command's process-tree CPU time and peak RSS, the input
    clips, the CLI render command, the :class:`~scripts.bench.measure.Bench` a section reads and fills;
  * :mod:`.render`: whole CLI renders: ``identity`` (vs ffmpeg), ``lut``, ``workers``, ``memory``,
    ``dask``;
  * :mod:`.speed`: ``speed``, every style against FFmpeg's transcode (and the per-style fps table);
  * :mod:`.stages`: ``stages``, the per-stage CPU costs and the machine limit they give;
  * :mod:`.neural`: ``neural`` (ONNX Runtime vs torch, int8, CUDA EP), ``gpu`` (NVML, NVENC) and
    ``neural_flicker`` (the neural temporal mode per model);
  * :mod:`.studio`: ``loop`` (the learning loop's costs, flicker) and ``studio`` (preview, queue page);
  * the report: :mod:`.figures` (reading a figure leniently, formatting it, the targets),
    :mod:`.rows` (the tables' rows, a builder per section), :mod:`.charts` (the Plotly figures) and
    :mod:`.report` (the Markdown tables, the HTML page, the README update, its own command).

Heavy imports (OpenCV, torch, ONNX Runtime, distributed, Streamlit, plotly) happen inside the section or
function that needs them, so ``--help`` and a partial ``--only`` run load only what they use.
"""
