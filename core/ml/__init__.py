"""Neural models at inference: ONNX Runtime sessions and the registry of versioned models.

``session`` (a model's input contract read from its graph, providers, batched and tiled inference that hides
seams), ``registry`` (named, versioned, checksummed ONNX files with an active version per name), ``zoo`` (the
catalogue of known third-party models: URLs, pinned hashes, input conventions, licences) and ``fetch`` (a known
model by name: resumable download, checked, registered with its convention).

May import: the base and ``core.video`` (the frame contract). Never torch: training lives in ``trainer/``.
"""
