"""Live CCTV video: frame capture, micro-batched inference, temporal smoothing into events."""
