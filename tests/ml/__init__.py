"""core/ml: ONNX Runtime sessions (tiling, batching, providers) and the model registry."""
