"""Serving: the one Predictor every deployment pattern calls, and the HTTP service.

Nothing here imports PyTorch (an import-linter contract checks it): serving needs ONNX Runtime,
NumPy and Pillow only.
"""
