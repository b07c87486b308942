"""Packaging: PyTorch -> ONNX export, parity verification, int8 quantization, the bundle."""
