"""ONNX Runtime versus PyTorch inference, batch 1 and 32, fp32 and int8 (ORT static QDQ).

.venv/bin/python benchmarks/inference_runtimes.py [--arch efficientnet_lite0 --size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from kennel import onnxrt as runtime
from kennel.config import TrainConfig
from kennel.package.export import to_onnx
from kennel.package.quantize import to_int8
from kennel.train.trainer import make_model


def _time(fn: object, x: np.ndarray, repeats: int) -> float:
    assert callable(fn)
    fn(x)
    began = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - began) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model = make_model(TrainConfig(arch=args.arch, image_size=args.size), 2).eval()  # type: ignore[arg-type]
    fp32 = to_onnx(model, args.size)
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (32, 3, args.size, args.size)).astype(np.float32)
    int8 = to_int8(fp32, calib)
    sessions = {
        "onnxruntime_fp32": runtime.session(fp32),
        "onnxruntime_int8": runtime.session(int8),
    }
    results = []
    for batch in (1, 32):
        x = rng.normal(0, 1, (batch, 3, args.size, args.size)).astype(np.float32)
        repeats = 20 if batch == 1 else 4
        with torch.no_grad():
            t = _time(lambda a: model(torch.from_numpy(a)), x, repeats)
        results.append(
            {
                "runtime": "pytorch_fp32",
                "batch": batch,
                "ms_per_batch": round(t * 1e3, 2),
                "img_s": round(batch / t, 1),
            }
        )
        for name, sess in sessions.items():
            t = _time(lambda a, s=sess: s.run(None, {"input": a}), x, repeats)
            results.append(
                {
                    "runtime": name,
                    "batch": batch,
                    "ms_per_batch": round(t * 1e3, 2),
                    "img_s": round(batch / t, 1),
                }
            )
    print(
        json.dumps(
            {
                "benchmark": "inference_runtimes",
                "arch": args.arch,
                "size": args.size,
                "cores": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
