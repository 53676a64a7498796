"""trainer/: fine-tuning, ONNX export and int8 (torch)."""
