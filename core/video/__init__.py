"""Video in and out, on PyAV: a file becomes frames and frames become a file, frame-exact.

``probe`` (what a file holds, every frame's time), ``reader`` (frames by index, with seeking; CPU or NVDEC),
``writer`` (encode keeping timestamps), ``frames`` (every pixel conversion, the frame contract), ``cuts``
(scene cuts on the input), ``flow`` (optical flow and warping), ``stitch`` (chunks joined with the source's
other streams), ``stills`` (PNG/JPEG), ``synthetic`` (seeded clips for the demo and the tests).

May import: the base (``core.errors``, ``core.paths``, ``core.presets``, ``core.hardware``...). Nothing else.
"""
